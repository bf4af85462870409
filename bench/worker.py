"""The Kafka runtime measured: throughput against a bare consumer, latency to /metrics, memory.

    .venv/bin/python bench/worker.py [--agents 20] [--days 6] [--rate 2000] [--seconds 60] [--workers 1]

On one broker (started on a free port, or CSPULSE_KAFKA) and the same topics:

1. a simulated file is produced; (a) a bare aiokafka consumer reads and decodes
   every message; (b) one `cspulse worker` computes every KPI from it.  The
   worker's rate is read from its own /metrics (events counted), from the first
   scrape that shows progress to the last message, so start-up is left out.  Its
   stored KPIs are then checked to equal `replay` of the file, exactly.
2. live load: chat messages stamped "now" at a fixed `--rate`, plus ten probe
   orders a second; the latency of a probe is the time from its send to the
   scrape of /metrics where the shop's `orders` for today includes it.  The
   worker's resident memory is sampled throughout.  (Only with one worker: with
   `--workers 2` the backlog is read by two processes sharing the partitions, and
   their rate and CPU are summed.)  A worker's CPU and resident memory include its
   rules process (`CSPULSE_RULES_PROCESS`, on by default; `false` judges the rules in
   the worker's own process, for comparison).

With `--days` over 6 (a long file, e.g. 75 days: two month-ends), the backlog is
also shown a tenth at a time: the workers' resident memory and their rate then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration"), str(ROOT / "deploy" / "kafka")]

EVENTS = re.compile(r"^cspulse_(?:events|rejected_events)_total\{[^}]*\} (\S+)$", re.M)
SHOP_ORDERS_TODAY = re.compile(r'^cspulse_shop_orders\{window="today"\} (\S+)$', re.M)


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def rss_mb(pid: int) -> float:
    """Resident MB of the process and its descendants (a worker's rules process)."""
    total = 0.0
    for p in family(pid):
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) / 1024 for line in text.splitlines() if line.startswith("VmRSS:")), 0.0)
    return total


async def bare(bootstrap: str, topics: list[str], expected: int) -> float:
    import msgspec
    from aiokafka import AIOKafkaConsumer
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    n, started = 0, None
    deadline = time.monotonic() + 600
    try:
        while n < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"bare consumer: {n:,} of {expected:,} messages after 10 minutes")
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


def family(pid: int) -> list[int]:
    """The process and its descendants (a worker's rules process)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds the process and its descendants have used (user + system, threads included)."""
    total = 0.0
    for p in family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue        # (gone since)
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def throughput(ports: list[int], n: int, pids: list[int]) -> tuple[float, float, list[tuple]]:
    """Events/s of the workers from their /metrics, first progress to the last event, and
    the CPU µs they spent an event over the same span (less sensitive than the rate to
    what else the machine runs: this one's two cores also run the broker); and a
    sample at each tenth of the events (events done, resident MB of the workers, events/s
    and CPU µs an event since the sample before), to see both stay flat over a long file."""
    first = last = None
    samples: list[tuple] = []
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        done = sum(float(v) for port in ports for v in EVENTS.findall(scrape(port)))
        now = time.perf_counter()
        if done and first is None:
            first = prev = (now, done, sum(map(cpu_s, pids)))
        if first is not None and (done >= n or done >= prev[1] + n / 10):
            cpu = sum(map(cpu_s, pids))
            span = done - prev[1]
            samples.append((done, sum(map(rss_mb, pids)), span / (now - prev[0]) if span else 0.0,
                            (cpu - prev[2]) / span * 1e6 if span else 0.0))
            prev = (now, done, cpu)
        if done >= n:
            last = prev
            break
        # once a second: /metrics is ≈ 5% of the worker's CPU at 4 scrapes a second (py-spy,
        # 20 agents), and Prometheus scrapes every 15 s
        time.sleep(1.0)
    else:
        raise SystemExit(f"worker: {done:,.0f} of {n:,} events after 30 minutes")
    events = last[1] - first[1]
    return events / (last[0] - first[0]), (last[2] - first[2]) / events * 1e6, samples


def live_load(bootstrap: str, prefix: str, rate: int, seconds: float, port: int, pid: int):
    """Latencies (s) of probe orders from send to /metrics, and RSS samples (s, MB)."""
    from kafka import KafkaProducer
    from zoneinfo import ZoneInfo
    zone = ZoneInfo("Asia/Shanghai")
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    sent: list[float] = []
    stop = threading.Event()
    rng = random.Random(1)

    def stamp() -> str:
        return datetime.now(zone).isoformat(timespec="milliseconds")

    def feed():
        tick, k, i = 0.1, 0, 0
        next_at = time.monotonic()
        while not stop.is_set():
            for _ in range(rate // 10):
                i += 1
                key, value = live_chat(f"live-{i}", rng, stamp())
                producer.send(prefix + "cs.chat", key=key, value=value)
            k += 1
            cid = f"probe-{k}"
            value = json.dumps({"event_id": f"probe-{k}", "type": "order_created", "ts": stamp(),
                                "order_id": f"po-{k}", "customer_id": cid, "amount": 1}).encode()
            sent.append(time.time())
            producer.send(prefix + "cs.orders", key=cid.encode(), value=value)
            producer.flush()
            next_at += tick
            time.sleep(max(0.0, next_at - time.monotonic()))

    def orders_today() -> float | None:
        m = SHOP_ORDERS_TODAY.search(scrape(port))
        return float(m.group(1)) if m else None

    base = orders_today() or 0.0
    feeder = threading.Thread(target=feed, daemon=True)
    started = time.time()
    feeder.start()
    seen: list[float] = []
    memory: list[tuple[float, float]] = []
    next_sample = 0.0
    while time.time() - started < seconds or len(seen) < len(sent):
        if time.time() - started >= seconds:
            stop.set()
        got = orders_today()
        now = time.time()
        if got is not None:
            while len(seen) < min(int(got - base), len(sent)):
                seen.append(now)
        if now - started >= next_sample:
            memory.append((now - started, rss_mb(pid)))
            next_sample += max(5.0, seconds / 40)
        if time.time() - started > seconds + 60:
            break                                   # probes not seen a minute after the end: report them
        time.sleep(0.02)
    stop.set()
    feeder.join()
    return [s - t for s, t in zip(seen, sent)], len(sent), memory


@contextlib.contextmanager
def workdir(prefix: str, keep: bool):
    """A fresh folder for the broker's data, the events and the workers' logs: removed
    at the end (a run leaves about 600 MB), or kept and named with `--keep`."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        if keep:
            print(f"kept: {tmp} (the broker's data, the events, the workers' logs)", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def kafka(tmp: Path):
    """The bootstrap address: CSPULSE_KAFKA, or a broker started here (and stopped after)."""
    from broker import Broker
    given = os.environ.get("CSPULSE_KAFKA")
    if given:
        yield given
        return
    print("starting a Kafka broker …", flush=True)
    broker = Broker(tmp / "kafka").start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def simulate(tmp: Path, agents: int, days: int) -> Path:
    """A simulated shop's events (1% duplicates, 0.1% bad lines) in tmp/events.jsonl."""
    path = tmp / "events.jsonl"
    print(f"simulating {agents} agents × {days} days …", flush=True)
    # from 2026-11-01 as always, or earlier for a long file, so that it ends before today
    # (its orders' refunds and payments run a week past the last day): a partition that
    # has read events stamped after now is not in a backlog, and is looked ahead at each
    # batch (`_judge_batch`), a third of the worker's time
    start = min(date(2026, 11, 1), date.today() - timedelta(days=days + 10))
    subprocess.run([str(Path(sys.executable).parent / "cspulse"), "simulate", "--agents", str(agents),
                    "--days", str(days), "--start", start.isoformat(), "--duplicates", "0.01", "--bad", "0.001",
                    "-o", str(path)],
                   check=True, capture_output=True)
    return path


def day_of(line: bytes) -> str | None:
    """The day ("YYYY-MM-DD") an event line is stamped on, read without parsing it (None: no `ts`)."""
    at = line.find(b'"ts":"')
    return line[at + 6:at + 16].decode("ascii", "replace") if at >= 0 else None


def day_at(path: Path):
    """events read -> the event day the file has reached there (the worker's partitions
    move through event time together: a partition's stream time is its slowest input)."""
    import bisect
    ends, days, i, day = [], [], 0, None
    with path.open("rb") as f:
        for line in f:
            d = day_of(line) or day
            if d != day and day is not None:
                ends.append(i)
                days.append(day)
            day, i = d, i + 1
    ends.append(i)
    days.append(day)
    return lambda done: days[min(len(days) - 1, bisect.bisect_left(ends, done))]


def live_chat(event_id: str, rng: random.Random, stamp: str) -> tuple[bytes, bytes]:
    """(key, value) of a customer's chat message stamped `stamp`, one of 20,000 customers."""
    cid = f"live-{rng.randrange(20000)}"
    return cid.encode(), json.dumps({"event_id": event_id, "type": "message", "ts": stamp, "sender": "customer",
                                     "conversation_id": f"lc-{cid}", "customer_id": cid}).encode()


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    from test_worker import Workers, month_kpis

    from cspulse import embedded
    from cspulse.core import Params, Rejected, decode
    from cspulse.core.shopclock import to_us
    from store import repo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--rate", type=int, default=2000, help="live load, events/s")
    ap.add_argument("--seconds", type=float, default=60, help="how long the live load runs")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder (broker data, worker logs)")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker processes sharing the partitions (the live part needs one: it is skipped)")
    args = ap.parse_args()
    from cspulse.settings import Settings
    rules_process = Settings().rules_process      # (as the workers it starts read it)
    workers = None
    with workdir("cspulse-bench-", args.keep) as tmp, kafka(tmp) as bootstrap:
        try:
            path = simulate(tmp, args.agents, args.days)
            n = sum(1 for _ in path.open("rb"))
            n_in = sum(not isinstance(decode(line), Rejected) for line in path.open("rb"))  # bad lines stay out
            url = f"sqlite:///{tmp / 'replay.db'}"
            embedded.replay(embedded.open_sources([str(path)]), engine=repo.connect(url), params=Params(),
                            until=to_us(datetime.now(timezone.utc)))
            expected = month_kpis(url)
            workers = Workers(bootstrap, tmp, partitions=8)
            workers.env["CSPULSE_STORE_INTERVAL_S"] = "10"     # the default cadence, as deployed
            print(f"producing {n:,} events …", flush=True)
            started = time.perf_counter()
            workers.produce(path)
            produce_rate = n / (time.perf_counter() - started)
            print("bare consumer …", flush=True)
            topics = [workers.prefix + t for t in ("cs.chat", "cs.orders", "cs.feedback", "cs.reviews")]
            bare_rate = asyncio.run(bare(bootstrap, topics, n_in))
            print("worker …", flush=True)
            procs = [workers.start(i) for i in range(args.workers)]
            port = workers.ports[-1]
            worker_rate, cpu_us, progress = throughput(workers.ports, n_in, [p.pid for p in procs])
            exact = workers.wait_for(expected, timeout=120) == expected
            latencies, probes, memory = [], 0, []
            if args.workers == 1:   # (a worker's /metrics has the others' partitions as last stored)
                print(f"live load: {args.rate:,} events/s for {args.seconds:.0f} s …", flush=True)
                latencies, probes, memory = live_load(bootstrap, workers.prefix, args.rate, args.seconds, port,
                                                      procs[0].pid)

            print()
            print(f"events in the file:                    {n:10,}")
            print(f"cspulse produce (kafka-python):        {produce_rate:10,.0f} events/s")
            print(f"(a) bare aiokafka consumer, decode:    {bare_rate:10,.0f} events/s")
            print(f"(b) cspulse worker, every KPI:         {worker_rate:10,.0f} events/s"
                  f"   = {worker_rate / bare_rate:.1%} of (a)   (exactly_once, 8 partitions, "
                  f"{args.workers} worker{'s' if args.workers > 1 else ''}, rules "
                  f"{'in a process of their own' if rules_process else 'in the worker'})")
            print(f"    worker CPU an event:               {cpu_us:10.1f} µs   = {1e6 / cpu_us:,.0f} events/s "
                  "a core's second (its rules process included)")
            print(f"worker's stored KPIs == replay:        {'yes' if exact else 'NO'}")
            if latencies:
                print(f"produce -> /metrics latency at {args.rate:,}/s: p50 {percentile(latencies, .5) * 1000:.0f} ms, "
                      f"p99 {percentile(latencies, .99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                      f"({len(latencies)} of {probes} probes seen)")
            if args.days > 6:   # a long file: did memory and speed stay flat through it?
                days = day_at(path)
                print(f"\nthe backlog, a tenth at a time:\n{'events read':>12} {'≈ event day':>12} {'RSS MB':>8} "
                      f"{'events/s':>9} {'CPU µs/ev':>10}")
                for done, mb, rate, cpu in progress:
                    print(f"{done:12,.0f} {days(done):>12} {mb:8.0f} {rate:9,.0f} {cpu:10.1f}")
            if memory:
                print("worker RSS over the live run (s: MB): "
                      + "  ".join(f"{t:.0f}: {mb:.0f}" for t, mb in memory))
        finally:
            if workers:
                workers.stop()


if __name__ == "__main__":
    main()
