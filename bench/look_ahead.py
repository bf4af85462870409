"""What the alerts' look-ahead costs per batch under a steady chatty load, resumed or done again.

    .venv/bin/python bench/look_ahead.py [--rate 3000] [--seconds 120]

In process, no Kafka: the chat messages of `bench/alerts.py`'s default load (20,000
customers writing at random, never answered, so each holds every message of the
allowed lateness), `--rate` a second in batches stamped 100 ms apart. After each batch
the pipeline looks ahead at the customers it changed (`look_ahead_changed`, what the
worker does for alerts); the time of that call is averaged per sixth of the run, once
with look-aheads resumed (the default) and once done again from each customer's state.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import datetime, timezone
from pathlib import Path
import sys

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from cspulse.core import Pipeline  # noqa: E402
from cspulse.core.params import US  # noqa: E402
from worker import live_chat  # noqa: E402  bench/worker.py: the live load's message


def run(resume: bool, rate: int, seconds: float) -> list[float]:
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
            p.feed_line(live_chat(f"e{n}", rng, stamp)[1])
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
    args = ap.parse_args()
    width = args.seconds / 6
    print(f"look-ahead per 100 ms batch, ms, by {width:.0f} s of stream time "
          f"({args.rate:,} messages/s from 20,000 customers never answered):")
    for resume in (False, True):
        cells = "  ".join(f"{ms * 1000:6.1f}" for ms in run(resume, args.rate, args.seconds))
        print(f"  {'resumed' if resume else 'done again':<10} {cells}", flush=True)


if __name__ == "__main__":
    main()
