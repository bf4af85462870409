"""The worker's batch path against one plain pipeline, over a simulated file, in process.

    python tests/batch_path.py --agents 4 --days 21 --start 2026-10-15

Runs in a process of its own (the worker module's state is global): the file's lines
are cut into the worker's batches as its reader gets them (records keyed and
partitioned as `cspulse produce` sends them, each topic of a partition in order), fed
through the worker's own `_feed`, written back (`_write_back`) every few batches, and
the partitions' books as of `--until` are summed; the same lines through one `Pipeline`
(what `replay` runs) give the other book.  No broker, no store (ids "stored" in a set).
Prints one JSON line: the KPI rows that differ (empty when exact) and the event counts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--start", default="2026-10-15")
    ap.add_argument("--traffic", type=int, default=80, help="conversations per agent and day")
    ap.add_argument("--until", default="2026-11-20T00:00:00+08:00")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--restore", action="store_true",
                    help="halfway, restore every partition from the changelog messages written so far")
    args = ap.parse_args()
    os.environ["CSPULSE_PARTITIONS"] = str(args.partitions)
    os.environ.setdefault("CSPULSE_DATABASE_URL", "sqlite://")     # (named by the worker module; unused)
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

    from ceiling import worker_records      # (the lines as the worker's reader gets them)
    from cspulse.core import Params, Pipeline
    from cspulse.core.book import KpiBook
    from cspulse.core.shopclock import to_us
    from cspulse.simulate import Simulator
    from streams import worker as w

    lines = list(Simulator(agents=args.agents, days=args.days, start=date.fromisoformat(args.start),
                           conversations_per_agent_day=args.traffic, duplicate_rate=0.01, bad_rate=0.001).lines())
    until = to_us(datetime.fromisoformat(args.until))

    replay = Pipeline(Params())
    for line in lines:
        replay.feed_line(line)

    records = list(worker_records(lines))
    stored: set[str] = set()
    w._seen_before = lambda p, event_id: event_id in stored or event_id in w._unstored_ids[p]
    for p in range(w.PARTITIONS):
        w.pipelines[p] = w._restore(p, {table.name: {} for table in w._TABLES})
    written: dict[int, dict[str, dict[str, bytes | None]]] = defaultdict(lambda: defaultdict(dict))
    table_of = {table.changelog_topic.get_topic_name(): table.name for table in w._TABLES}
    restored = False
    for n, i in enumerate(range(0, len(records), w.BATCH)):
        shares = defaultdict(list)
        for r in records[i:i + w.BATCH]:
            shares[r.partition].append(r)
        for p, share in shares.items():
            w._feed(p, share)
        if n % 5 == 4:      # a commit: written back, ids stored
            for p, pl in w.pipelines.items():
                w._write_back(p, pl)
            for topic, p, key, value in w._outgoing:      # (the changelogs, compacted)
                written[p][table_of[topic]][key] = value
            w._outgoing.clear()
            for ids in w._unstored_ids.values():
                chunks = list(ids.chunks)
                for _, chunk in chunks:
                    stored.update(chunk)
                ids.stored(chunks)
            if args.restore and not restored and i >= len(records) // 2:     # a restart
                restored = True
                for p in range(w.PARTITIONS):
                    read = {table.name: {k: v for k, v in written[p][table.name].items() if v is not None}
                            for table in w._TABLES}
                    w.pipelines[p] = w._restore(p, read)

    worker = KpiBook()
    for pl in w.pipelines.values():
        worker.add_buckets(pl.view(until).stated)
    a, b = replay.view(until).all_kpis(), worker.all_kpis()
    differ = {f"{who or ''}|{period}": {k: [a.get((who, period), {}).get(k), b.get((who, period), {}).get(k)]
                                        for k in set(a.get((who, period), {})) | set(b.get((who, period), {}))
                                        if a.get((who, period), {}).get(k) != b.get((who, period), {}).get(k)}
              for who, period in sorted(set(a) | set(b), key=str) if a.get((who, period)) != b.get((who, period))}
    print(json.dumps({"events": len(lines), "rows": len(a), "differ": differ, "restored": restored,
                      "applied": [replay.stats.applied, sum(pl.stats.applied for pl in w.pipelines.values())],
                      "duplicates": [replay.stats.duplicates,
                                     sum(pl.stats.duplicates for pl in w.pipelines.values())]}))


if __name__ == "__main__":
    main()
