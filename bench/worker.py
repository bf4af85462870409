"""Kafka runtime throughput: a bare aiokafka consumer vs `cspulse worker` on the same topics.

    .venv/bin/python bench/worker.py [--traffic 300] [--days 3]

Starts a broker on a free port (or uses CSPULSE_KAFKA), simulates and produces a
file, then (a) reads every input message with a bare aiokafka consumer that only
decodes the JSON, and (b) runs one `cspulse worker` until the KPIs it stores equal
`replay` of the file.  The worker's rate counts from its first stored write (so
start-up and group join are left out) and is therefore a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration"), str(ROOT / "deploy" / "kafka")]


async def bare(bootstrap: str, topics: list[str], expected: int) -> float:
    import msgspec
    from aiokafka import AIOKafkaConsumer
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    n, started = 0, None
    try:
        while n < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                if started is None:
                    started = time.perf_counter()
                for r in records:
                    msgspec.json.decode(r.value)
                    n += 1
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - started)


def main() -> None:
    from broker import Broker
    from test_worker import Workers, month_kpis

    from cspulse import embedded
    from cspulse.core import Params
    from cspulse.core.shopclock import to_us
    from store import repo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traffic", type=int, default=300)
    ap.add_argument("--days", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cspulse-bench-"))
    broker = None
    bootstrap = os.environ.get("CSPULSE_KAFKA")
    if not bootstrap:
        broker = Broker(tmp / "kafka").start()
        bootstrap = broker.bootstrap
    try:
        path = tmp / "events.jsonl"
        cli = str(Path(sys.executable).parent / "cspulse")
        subprocess.run([cli, "simulate", "--agents", "3", "--days", str(args.days), "--traffic", str(args.traffic),
                        "-o", str(path)], check=True, capture_output=True)
        n = sum(1 for _ in path.open("rb"))
        url = f"sqlite:///{tmp / 'replay.db'}"
        embedded.replay(embedded.open_sources([str(path)]), engine=repo.connect(url), params=Params(),
                        until=to_us(datetime.now(timezone.utc)))
        expected = month_kpis(url)
        workers = Workers(bootstrap, tmp)
        started = time.perf_counter()
        workers.produce(path)
        produce_rate = n / (time.perf_counter() - started)
        topics = [workers.prefix + t for t in ("cs.chat", "cs.orders", "cs.feedback", "cs.reviews")]
        bare_rate = asyncio.run(bare(bootstrap, topics, n))
        workers.start()
        first = None
        while True:
            got = month_kpis(workers.db)
            if got and first is None:
                first = time.perf_counter()
            if got == expected:
                break
            time.sleep(0.25)
        worker_rate = n / (time.perf_counter() - first)
        workers.stop()
        print(f"events: {n:,}")
        print(f"cspulse produce (kafka-python):      {produce_rate:10,.0f} events/s")
        print(f"bare aiokafka consumer (decode only): {bare_rate:10,.0f} events/s")
        print(f"cspulse worker (exactly_once, 1 proc): {worker_rate:9,.0f} events/s  (≥; "
              f"{worker_rate / bare_rate:.1%} of bare)")
    finally:
        if broker:
            broker.stop()


if __name__ == "__main__":
    main()
