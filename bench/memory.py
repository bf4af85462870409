"""The worker's state over months of a shop's events: does its memory stay flat?

    .venv/bin/python bench/memory.py [--agents 20] [--days 75] [--every 5] [--rules] [--trace]

A simulated file (as `bench/worker.py` makes it, ending before today) runs through the
worker's own batch path in process (`_feed`, the write-back every 2.8 s of the run as
in a backlog, the notes drained as the rules step would; no broker, store or rules),
and every `--every` days of event time prints the resident memory, the blocks Python
has allocated, and what the state holds: customers, their orders (kept while their
month is open), the event ids kept for de-duplication (two days), and the changelog
keys; and the CPU an event since the row before (the core and its write-back).  Flat means: after the first month, the same day of the month holds as much.

`--rules` adds the worker's rules step (`WorkerAlerts.step` after each batch, and with
the whole shop's book once a second as the leader's refresh does) and prints what the
rules hold: alerts (and those firing), the agents' sliding-window notes, customers
whose look-ahead the rules saw, and customers changed since the pipelines' last look-ahead.  `--trace`
prints, at the end, the ten places whose Python allocations grew most since the
first row after the first month (tracemalloc; the run is several times slower).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ceiling import worker_records             # noqa: E402  (the benches' own helpers)
from worker import day_of, rss_mb, simulate    # noqa: E402  (bench/worker.py)


def run(path: Path, every: int, rules: bool = False, trace: bool = False) -> None:
    os.environ.setdefault("CSPULSE_DATABASE_URL", "sqlite://")    # (the worker module names a store; unused)
    os.environ.setdefault("CSPULSE_PARTITIONS", "8")               # as bench/worker.py runs it
    os.environ["CSPULSE_RULES_PROCESS"] = "false"    # the rules' memory is counted here, in this process
    from streams import worker as w
    from streams.alerting import now_us
    from cspulse.core import KpiBook

    for p in range(w.PARTITIONS):     # empty partitions, as a worker's first start restores them
        w.pipelines[p] = w._restore(p, {table.name: {} for table in w._TABLES})
    batch: list = []
    last_write = time.perf_counter()

    def process(batch: list) -> None:
        nonlocal last_write
        shares = defaultdict(list)
        for r in batch:
            shares[r.partition].append(r)
        for p, share in shares.items():
            w._feed(p, share)
        w._dead_letters.clear()
        if rules:
            judge(None)
        else:
            for pl in w.pipelines.values():
                pl.drain_notes()          # (the worker's rules step takes them each batch)
        if rules and time.perf_counter() - last_judged[0] >= 1.0:     # the leader's refresh
            last_judged[0] = time.perf_counter()
            book = KpiBook()
            month = w._clock().day(now_us())[:7]
            for pl in w.pipelines.values():
                book.add_buckets(pl.book.copy(month).stated)
            judge(book)
        if time.perf_counter() - last_write >= 2.8:
            last_write = time.perf_counter()
            for p, pl in w.pipelines.items():
                w._write_back(p, pl)
            w._outgoing.clear()
            w._spare_the_collector(time.monotonic())

    last_judged = [time.perf_counter()]

    def judge(book) -> None:
        w.alerting.step(w.pipelines, book, now_us())
        w.alerting.take_unstored()
        w.alerting.outgoing.clear()

    since = [0, time.process_time()]      # events and CPU time at the last row
    first_snapshot: list = []

    def report(day: str, events: int) -> None:
        cpu = time.process_time()
        per_event = (cpu - since[1]) / max(1, events - since[0]) * 1e6
        customers = [c for pl in w.pipelines.values() for c in pl.ledger.customers.values()]
        print(f"{day:>10} {events:11,} {rss_mb(os.getpid()):7.0f} {sys.getallocatedblocks() / 1e6:8.2f} {len(customers):10,} "
              f"{sum(len(c.orders) for c in customers):8,} {sum(len(c.recent_ids) for c in customers):9,} "
              f"{sum(len(t.data) for t in w._TABLES):10,} {per_event:9.1f}", end="", flush=True)
        if rules:
            engine = w.alerting.engine
            print(f" {len(engine.alerts.alerts):8,} {len(engine.alerts.firing()):7,} "
                  f"{sum(len(c) for ws in engine._recent.values() for c in ws.values()):8,} "
                  f"{len(engine._seen_ahead):7,} {sum(len(pl._dirty) for pl in w.pipelines.values()):7,}", end="")
        print(flush=True)
        if trace and not first_snapshot and day != "end" and events and rows[0] >= 30 // every:
            first_snapshot.append(tracemalloc.take_snapshot())
        rows[0] += 1
        since[:] = [events, time.process_time()]

    print(f"{'event day':>10} {'events':>11} {'RSS MB':>7} {'blocks M':>8} {'customers':>10} {'orders':>8} "
          f"{'event ids':>9} {'table keys':>10} {'CPU µs/ev':>9}", end="")
    print(f" {'alerts':>8} {'firing':>7} {'window n':>8} {'ahead c':>7} {'dirty':>7}" if rules else "")
    rows = [0]
    if trace:
        tracemalloc.start(4)
    first = day = None
    n = 0
    with path.open("rb") as f:
        for record in worker_records(f):
            d = day_of(record.value) or day
            if d != day and d > (day or ""):          # (a line stamped earlier is no new day)
                first = first or date.fromisoformat(d)
                if day is not None and (date.fromisoformat(d) - first).days % every == 0:
                    report(d, n)
                day = d
            batch.append(record)
            n += 1
            if len(batch) == w.BATCH:
                process(batch)
                batch = []
    if batch:
        process(batch)
    report("end", n)
    if trace and first_snapshot:
        print("\nPython allocations grown most since the first row after the first month:")
        for stat in tracemalloc.take_snapshot().compare_to(first_snapshot[0], "traceback")[:10]:
            print(f"{stat.size_diff / 1e6:+8.1f} MB {stat.count_diff:+10,} blocks")
            for line in stat.traceback.format()[-4:]:
                print("    " + line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--days", type=int, default=75)
    ap.add_argument("--every", type=int, default=5, help="print every this many days of event time")
    ap.add_argument("--rules", action="store_true", help="with the worker's rules step")
    ap.add_argument("--trace", action="store_true", help="where Python's allocations grew (tracemalloc)")
    args = ap.parse_args()
    if args.days < 1 or args.every < 1:
        sys.exit("bench/memory.py: --days and --every must be at least 1")
    with tempfile.TemporaryDirectory(prefix="cspulse-memory-") as tmp:
        run(simulate(Path(tmp), args.agents, args.days), args.every, args.rules, args.trace)


if __name__ == "__main__":
    main()
