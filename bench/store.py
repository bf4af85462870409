"""The worker's store write over a long history: does its cost stay flat?

    .venv/bin/python bench/store.py [--days 75] [--agents 20] [--partitions 8] [--db URL]

Books of `--days` days (ending today) for `--agents` agents on `--partitions`
partitions, every agent in about half the partitions each day (customers spread
over them), 29 counters a bucket, go through the store write the worker makes every
10 s (`streams/worker.py`, `_store`): the partitions' months written where they
changed, the months read where they changed, the KPIs of changed months recomputed
and rewritten where their counters changed.  Printed: the first write (everything),
and a next write where only today moved on (what a live worker writes each time).
The default store is a fresh SQLite file; `--db` takes a PostgreSQL URL.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlmodel import Session                   # noqa: E402

from cspulse.core.facts import COUNTERS         # noqa: E402
from store import repo                          # noqa: E402


def books(days: int, agents: int, partitions: int) -> dict[int, dict[str, dict]]:
    """{partition: {month: {"who|period": counters}}}, as the worker's views give them."""
    rng = random.Random(1)
    start = date.today() - timedelta(days - 1)
    views: dict[int, dict[str, dict]] = {}
    for p in range(partitions):
        months: dict[str, dict] = {}
        for d in range(days):
            day = (start + timedelta(d)).isoformat()
            month = months.setdefault(day[:7], {})
            for a in range(agents):
                if a % partitions == p or rng.random() < 0.5:
                    month[f"agent-{a}|{day}"] = {c: rng.randint(1, 1000) for c in COUNTERS}
            month[f"|{day}"] = {"paying_customers": 5, "served_customers": 9}
        views[p] = months
    return views


def store_write(engine, views: dict, read: dict) -> tuple[float, int, int, int]:
    """One store write as the worker makes it (`repo.store_partition_books`): (seconds, month rows read)."""
    started = time.perf_counter()
    with Session(engine) as s:
        repo.one_writer_at_a_time(s)
        fresh = repo.store_partition_books(views, read, session=s)
        s.commit()
    read.update(fresh)
    return time.perf_counter() - started, len(fresh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=75)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--db", help="a store URL (default: a fresh SQLite file)")
    args = ap.parse_args()
    if min(args.days, args.agents, args.partitions) < 1:
        sys.exit("bench/store.py: --days, --agents and --partitions must be at least 1")
    with tempfile.TemporaryDirectory(prefix="cspulse-store-") as tmp:
        engine = repo.connect(args.db or f"sqlite:///{tmp}/store.db")
        views, read = books(args.days, args.agents, args.partitions), {}
        print(f"{args.days} days × {args.agents} agents × {args.partitions} partitions")
        print("first write (everything): %.3f s (%d partition months read)"
              % store_write(engine, views, read))
        today = date.today().isoformat()
        live = {p: {today[:7]: months[today[:7]]} for p, months in views.items()}   # the month of now
        timings = []
        for _ in range(5):          # today moves on between writes, as under a live load
            for month in live.values():
                for key, bucket in month[today[:7]].items():
                    if key.endswith(today):
                        bucket["responses"] = bucket.get("responses", 0) + 1
            timings.append(store_write(engine, live, read))
        timings.sort()
        print("next write (today moved on), median of 5: %.3f s (%d partition months read)"
              % timings[2])


if __name__ == "__main__":
    main()
