"""What the alerts' look-ahead costs per batch under a steady chatty load, resumed or done again.

    .venv/bin/python bench/look_ahead.py [--rate 3000] [--seconds 120] [--customers 20000]

In process, no Kafka: `--customers` customers write at random, `--rate` messages a
second stamped 100 ms apart in batches, never answered (so each holds every message
of the allowed lateness, as in `bench/alerts.py`'s default load). After each batch
the pipeline looks ahead at the customers it changed (`look_ahead_changed`, what the
worker does for alerts); the time of that call is averaged per sixth of the run, once
with look-aheads resumed (the default) and once done again from each customer's state.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timezone
from pathlib import Path
import sys

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from cspulse.core import Pipeline  # noqa: E402
from cspulse.core.params import US  # noqa: E402


def run(resume: bool, rate: int, seconds: float, customers: int) -> list[float]:
    p = Pipeline()
    p.resume_look_ahead = resume
    p.track_changes()
    p.collect_notes()
    rng, start, n, cost = random.Random(1), 1_795_000_000 * US, 0, []
    for tick in range(int(seconds * 10)):
        now = start + tick * 100_000
        stamp = datetime.fromtimestamp(now / US, timezone.utc).isoformat(timespec="milliseconds")
        for _ in range(rate // 10):
            n += 1
            c = f"live-{rng.randrange(customers)}"
            p.feed_line(json.dumps({"event_id": f"e{n}", "type": "message", "ts": stamp, "sender": "customer",
                                    "conversation_id": f"lc-{c}", "customer_id": c}))
        p.drain_changes()
        started = time.perf_counter()
        p.look_ahead_changed(now + 50_000)
        p.drain_notes()
        cost.append(time.perf_counter() - started)
    k = max(1, len(cost) // 6)
    return [sum(cost[i:i + k]) / len(cost[i:i + k]) for i in range(0, len(cost), k)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=3000, help="messages per second")
    ap.add_argument("--seconds", type=float, default=120, help="stream time simulated")
    ap.add_argument("--customers", type=int, default=20000)
    args = ap.parse_args()
    width = args.seconds / 6
    print(f"look-ahead per 100 ms batch, ms, by {width:.0f} s of stream time "
          f"({args.rate:,} messages/s, {args.customers:,} customers never answered):")
    for resume in (False, True):
        cells = "  ".join(f"{ms * 1000:6.1f}" for ms in run(resume, args.rate, args.seconds, args.customers))
        print(f"  {'resumed' if resume else 'done again':<10} {cells}", flush=True)


if __name__ == "__main__":
    main()
