"""Replay throughput and peak memory of the embedded pipeline (issue: ≥ 100k events/s, flat memory).

    .venv/bin/python bench/replay.py [--agents 20] [--days 30] [--keep DIR]

Simulates the 20-agent, 30-day month (about a million events) once with the
default customers per agent and once with ten times as many, then replays each
in a fresh child process pinned to one core, twice: the pure core alone
(parsing included) and the whole `cspulse replay` path into SQLite.  A third
case replays three such months through the core, to show memory staying flat
over time.  Prints events/s and the child's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(mode: str, path: str, db: str) -> None:
    import gc
    import resource

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core
    from cspulse.core import Params, Pipeline

    started = time.perf_counter()
    if mode == "core":
        gc.disable()   # as embedded.replay does
        p = Pipeline()
        with open(path, "rb") as f:
            for line in f:
                p.feed_line(line)
        p.finish()
        n = p.stats.read
        customers = len(p.ledger.customers)
    else:
        from cspulse import embedded
        from store import repo
        sources = embedded.open_sources([path])
        p, run, _ = embedded.replay(sources, engine=repo.connect(db), params=Params())
        n = run.read
        customers = len(p.ledger.customers)
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"events": n, "seconds": seconds, "rss_mb": rss_mb, "customers": customers}))


def simulate(path: Path, agents: int, days: int, customers: int | None) -> int:
    from cspulse.simulate import Simulator
    n = 0
    with path.open("wb") as f:
        for line in Simulator(agents=agents, days=days, seed=1, customers_per_agent=customers).lines():
            f.write(line + b"\n")
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--keep", help="Keep the simulated files in this folder (reused when present)")
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child(*args._child)
        return
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cspulse-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    cases = [("1× customers", None, args.days, ("core", "replay")),
             ("10× customers", 265 * 4 * 10, args.days, ("core", "replay")),
             (f"{3 * args.days} days", None, 3 * args.days, ("core",))]
    rows = []
    for label, customers, days, modes in cases:
        path = folder / f"month-{args.agents}x{days}-{customers or 'default'}.jsonl"
        if not path.exists():
            print(f"simulating {label} ({args.agents} agents × {days} days) …", file=sys.stderr, flush=True)
            simulate(path, args.agents, days, customers)
        for mode in modes:
            db = folder / "bench.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            print(f"  {label}: {mode} …", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--_child", mode, str(path), f"sqlite:///{db}"],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((label, mode, r))
    print()
    print(f"{'input':<15} {'path':<28} {'events':>10} {'seconds':>8} {'events/s':>10} {'peak RSS':>9} "
          f"{'customers in memory at end':>27}")
    for label, mode, r in rows:
        what = "core (parse+KPIs)" if mode == "core" else "cspulse replay (+SQLite)"
        print(f"{label:<15} {what:<28} {r['events']:>10,} {r['seconds']:>8.1f} {r['events'] / r['seconds']:>10,.0f} "
              f"{r['rss_mb']:>7.0f}MB {r['customers']:>27,}")
    if not args.keep:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
