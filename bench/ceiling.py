"""The most one worker could do here if Kafka cost nothing: its batch path, in process.

    .venv/bin/python bench/ceiling.py [--agents 20] [--days 6] [--partitions 8]

A simulated file (as `bench/worker.py` makes it) is cut into the worker's batches
(2,000 records, records keyed and partitioned as `cspulse produce` does) and run
through the worker's own functions, in a child process pinned to one core:
`_feed` (decode, the core), `_write_back` every 2.8 s of the run (what a commit
writes in a backlog; its messages are dropped, not sent; the state that survived is
then frozen out of the cyclic collector's sight, as the worker's refresh does), and, in the second pass,
the look-ahead and rules step the worker runs after each batch (`_judge_batch`, the
default rules). No broker, no store, no /metrics: what is left when the worker's
Kafka reads and writes, its transactions and its timers take no time at all.
Prints events/s and µs an event for each phase.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


def worker_records(lines):
    """The lines of a file as the worker's reader gets them (aiokafka records), keyed and
    partitioned as `cspulse produce` sends them, offsets counted per topic and partition
    (a bad line as a chat message)."""
    from cspulse.core import Rejected, decode
    from streams import worker as w
    from streams.topics import topic_and_key
    offsets = defaultdict(int)
    for line in lines:
        event = decode(line)
        topic, key = ("cs.chat", "bad") if isinstance(event, Rejected) else topic_and_key(event)
        p, name = w.partition_of(key), w.PREFIX + topic
        yield SimpleNamespace(key=key.encode(), value=line, topic=name, partition=p,
                              offset=offsets[(name, p)], timestamp=int(time.time() * 1000))
        offsets[(name, p)] += 1


def child(path: str, partitions: int, rules: bool) -> dict:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one core
    os.environ["CSPULSE_PARTITIONS"] = str(partitions)
    os.environ.setdefault("CSPULSE_DATABASE_URL", "sqlite://")    # (the worker module names a store; unused)
    os.environ["CSPULSE_RULES_PROCESS"] = "false"   # the rules judged here: their cost is what is measured
    from streams import worker as w

    records = list(worker_records(Path(path).read_bytes().splitlines()))
    for p in range(w.PARTITIONS):     # empty partitions, as a worker's first start restores them
        w.pipelines[p] = w._restore(p, {table.name: {} for table in w._TABLES})
    w._alerts_loaded = True
    spent = {"feed": 0.0, "write_back": 0.0, "rules": 0.0}
    started = last_commit = time.perf_counter()
    for i in range(0, len(records), w.BATCH):
        shares = defaultdict(list)
        for r in records[i:i + w.BATCH]:
            shares[r.partition].append(r)
        a = time.perf_counter()
        for p, share in shares.items():
            w._feed(p, share)
        w._dead_letters.clear()
        b = time.perf_counter()
        spent["feed"] += b - a
        if b - last_commit >= 2.8 or i + w.BATCH >= len(records):
            last_commit = b
            for p, pl in w.pipelines.items():
                w._write_back(p, pl)
            w._outgoing.clear()
            spent["write_back"] += time.perf_counter() - b
            w._spare_the_collector(time.monotonic())    # as the worker's refresh does
        if rules:
            c = time.perf_counter()
            w._judge_batch(shares, w.now_us())
            w.alerting.outgoing.clear()
            spent["rules"] += time.perf_counter() - c
    took = time.perf_counter() - started
    return {"events": len(records), "seconds": took, **spent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.partitions, args.child[1] == "rules")))
        return
    from worker import simulate     # bench/worker.py's file
    with tempfile.TemporaryDirectory(prefix="cspulse-ceiling-") as tmp:
        path = simulate(Path(tmp), args.agents, args.days)
        print(f"{'the worker, no Kafka':22} {'events/s':>9} {'feed':>9} {'write-back':>11} {'rules':>9}   (µs an event)")
        for mode in ("none", "rules"):
            run = subprocess.run([sys.executable, __file__, "--partitions", str(args.partitions),
                                  "--child", str(path), mode], check=True, capture_output=True, text=True)
            r = json.loads(run.stdout.strip().splitlines()[-1])
            n = r["events"]
            label = "default rules" if mode == "rules" else "no rules"
            print(f"{label:22} {n / r['seconds']:9,.0f} {1e6 * r['feed'] / n:9.1f} {1e6 * r['write_back'] / n:11.1f} "
                  f"{1e6 * r['rules'] / n:9.1f}", flush=True)
        print(f"({n:,} events, {args.partitions} partitions, one core, no broker)")


if __name__ == "__main__":
    main()
