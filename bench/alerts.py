"""What the alert rules cost and how fast an alert arrives.

    .venv/bin/python bench/alerts.py [--agents 20] [--days 3] [--rate 2000] [--seconds 60]

On one broker (started on a free port, or CSPULSE_KAFKA):

1. in-process: a simulated file through the core alone, then through the core and
   the default rules (`AlertRunner`): events/s of each;
2. the same file produced once, then read by two workers, one after the other:
   one with a rule file whose only rule never matches, one with the default rules;
   their backlog rates (from /metrics) and the rules' share of the per-event cost;
3. live: chat messages stamped "now" at a fixed `--rate`, plus ten complaints a
   second credited to an agent; the latency of each from its send to its
   `complaint_received` alert read back from cs.alerts (p50, p99).

Two shapes of live chat (`--load`):
- `chatty` (default, the harder one): 20,000 customers writing at random and never
  answered, so each holds every message of the allowed lateness (600 s) and a
  batch touching it looks ahead over all of them again;
- `conversations`: 2,000 conversations open at a time, customer and agent taking
  turns, 4 to 12 messages each, then a new customer: what a shop's desk looks like.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration"), str(ROOT / "deploy" / "kafka"),
                str(ROOT / "bench")]

QUIET_RULES = """\
rules:   # one rule that nothing in a simulated stream matches: the worker without alert work
  - name: nothing
    watch: plan
    when: {state: {"==": "never"}}
    severity: info
    message: "-"
"""


def in_process(path: Path) -> tuple[float, float]:
    import dataclasses

    from cspulse.core import Params, Pipeline
    from rules.engine import RuleEngine
    from rules.load import load_rules
    from rules.runner import AlertRunner
    lines = path.read_bytes().splitlines()
    rules = load_rules()
    params = dataclasses.replace(Params(), wait_checks_s=rules.wait_checks_s)
    rates = []
    for with_rules in (False, True):
        pl = Pipeline(params)
        runner = AlertRunner(pl, RuleEngine(rules, params)) if with_rules else None
        started = time.perf_counter()
        for line in lines:
            pl.feed_line(line)
            if runner:
                runner.step()
        runner.finish() if runner else pl.finish()
        rates.append(len(lines) / (time.perf_counter() - started))
    return rates[0], rates[1]


class Conversations:
    """Live chat as a desk sees it: `open` conversations at a time; each message comes from
    one of them, customer and agent in turn; after 4 to 12 messages a conversation ends and
    a new customer's begins."""

    def __init__(self, rng: random.Random, open: int = 2000) -> None:
        self.rng, self.started = rng, 0
        self.open = [self._new() for _ in range(open)]

    def _new(self) -> list:
        self.started += 1
        # customer, length, messages sent, the agent answering
        return [f"desk-{self.started}", self.rng.randint(4, 12), 0, f"agent-{1 + self.started % 20:02d}"]

    def __call__(self, event_id: str, rng: random.Random, stamp: str) -> tuple[bytes, bytes]:
        i = rng.randrange(len(self.open))
        conv = self.open[i]
        cid, length, n, agent = conv
        event = {"event_id": event_id, "type": "message", "ts": stamp, "conversation_id": f"dc-{cid}",
                 "customer_id": cid, "sender": "customer"}
        if n % 2:
            event |= {"sender": "agent", "agent_id": agent, "auto_reply": False}
        conv[2] = n + 1
        if conv[2] >= length:
            self.open[i] = self._new()
        return cid.encode(), json.dumps(event).encode()


def _feed(bootstrap: str, prefix: str, rate: int, seconds: float, sent, load: str = "chatty") -> None:
    """The live load, in a process of its own (so the reader's timing is not the feeder's GIL)."""
    from kafka import KafkaProducer
    from worker import live_chat
    from zoneinfo import ZoneInfo
    zone = ZoneInfo("Asia/Shanghai")
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    rng = random.Random(2)
    chat = Conversations(random.Random(3)) if load == "conversations" else live_chat
    tick, k, i = 0.1, 0, 0
    started = next_at = time.monotonic()
    while time.monotonic() - started < seconds:
        stamp = datetime.now(zone).isoformat(timespec="milliseconds")
        for _ in range(rate // 10):
            i += 1
            key, value = chat(f"alive-{i}", rng, stamp)
            producer.send(prefix + "cs.chat", key=key, value=value)
        k += 1
        cid, conv = f"probe-{k}", f"probe-conv-{k}"
        value = json.dumps({"event_id": f"aprobe-{k}", "type": "complaint", "ts": stamp, "customer_id": cid,
                            "agent_id": "agent-01", "conversation_id": conv}).encode()
        sent.put((f"complaint_received|agent-01|{conv}", time.time()))
        producer.send(prefix + "cs.feedback", key=cid.encode(), value=value)
        producer.flush()
        next_at += tick
        time.sleep(max(0.0, next_at - time.monotonic()))
    producer.close()


def live_alert_latency(bootstrap: str, prefix: str, rate: int, seconds: float,
                       load: str = "chatty") -> tuple[list[tuple[float, float]], int]:
    """(send time, latency) of every probe whose alert came back, by send time; and the probes sent."""
    import multiprocessing

    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    topic = prefix + "cs.alerts"
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(parts)
    consumer.seek_to_end(*parts)
    for tp in parts:
        consumer.position(tp)           # resolve the end now, before the load starts
    sent_q = multiprocessing.Queue()
    feeder = multiprocessing.Process(target=_feed, args=(bootstrap, prefix, rate, seconds, sent_q, load),
                                     daemon=True)
    got: dict[str, float] = {}
    sent: dict[str, float] = {}

    def take_sent() -> None:
        # read as the feeder writes: a process exits only once what it put on a queue is
        # in the pipe, so a long run would hang on a full pipe if this waited for it
        while True:
            try:
                key, t = sent_q.get_nowait()
            except queue.Empty:
                return
            sent[key] = t
    started = time.time()
    feeder.start()
    while time.time() - started < seconds + 30:
        for records in consumer.poll(timeout_ms=50).values():
            now = time.time()
            for r in records:
                alert = json.loads(r.value)
                if alert["action"] == "firing" and alert["key"].startswith("complaint_received|agent-01|probe-conv-"):
                    got.setdefault(alert["key"], now)
        take_sent()
        if not feeder.is_alive() and time.time() - started > seconds + 5:
            break
    while feeder.is_alive():
        take_sent()
        feeder.join(0.1)
    take_sent()
    consumer.close()
    return sorted((sent[k], got[k] - sent[k]) for k in got if k in sent), len(sent)


def loop_stalls(port: int) -> dict[str, float]:
    """The worker's loop-lag histogram: {upper bound: ticks later than it} (and '+Inf': all ticks)."""
    import re
    from worker import scrape
    buckets = {le: float(v) for le, v in
               re.findall(r'^cspulse_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', scrape(port), re.M)}
    total = buckets.get("+Inf", 0.0)
    return {le: total - n for le, n in buckets.items() if le != "+Inf"} | {"+Inf": total}


def _slices(timed: list[tuple[float, float]], width: float):
    """(start offset, latencies) per `width` seconds of send time."""
    out: dict[int, list[float]] = {}
    for sent, lat in timed:
        out.setdefault(int((sent - timed[0][0]) // width), []).append(lat)
    return [(i * width, lats) for i, lats in sorted(out.items())]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def main() -> None:
    from test_worker import Workers
    from worker import kafka, percentile, simulate, throughput, workdir

    from cspulse.core import Rejected, decode

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--rate", type=int, default=2000, help="live load, events/s")
    ap.add_argument("--seconds", type=float, default=60, help="how long the live load runs")
    ap.add_argument("--store-interval", type=float, default=10, help="CSPULSE_STORE_INTERVAL_S of the workers")
    ap.add_argument("--load", choices=("chatty", "conversations"), default="chatty",
                    help="shape of the live chat (see above)")
    ap.add_argument("--latency-only", action="store_true",
                    help="skip the rules' cost (in process and the quiet-rules worker): only the default-rules worker")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder (broker data, worker logs)")
    args = ap.parse_args()
    running = []
    with workdir("cspulse-bench-alerts-", args.keep) as tmp, kafka(tmp) as bootstrap:
        try:
            path = simulate(tmp, args.agents, args.days)
            n_in = sum(not isinstance(decode(line), Rejected) for line in path.open("rb"))
            core_rate = rules_rate = 0.0
            if not args.latency_only:
                print("in process: core, then core + rules …", flush=True)
                core_rate, rules_rate = in_process(path)
            quiet = tmp / "quiet.yaml"
            quiet.write_text(QUIET_RULES)
            rates = {}
            runs = (("quiet rules", str(quiet)), ("default rules", ""))
            for name, rules_file in runs[1:] if args.latency_only else runs:
                workers = Workers(bootstrap, tmp / name.replace(" ", "-"), partitions=8)
                (tmp / name.replace(" ", "-")).mkdir()
                workers.env["CSPULSE_STORE_INTERVAL_S"] = str(args.store_interval)
                workers.env["CSPULSE_RULES_FILE"] = rules_file
                print(f"worker with the {name}: producing and reading {n_in:,} events …", flush=True)
                workers.produce(path)
                running.append(workers)
                proc = workers.start()
                rates[name] = throughput(workers.ports[-1:], n_in, [proc.pid])[0]
                if name == "quiet rules":
                    workers.stop()
                    running.remove(workers)
            workers = running[-1]
            print(f"live load ({args.load}): {args.rate:,} events/s + 10 complaints/s for {args.seconds:.0f} s …",
                  flush=True)
            before = loop_stalls(workers.ports[-1])
            timed, probes = live_alert_latency(bootstrap, workers.prefix, args.rate, args.seconds, args.load)
            latencies = [lat for _, lat in timed]
            after = loop_stalls(workers.ports[-1])

            default_us = 1e6 / rates["default rules"]
            print()
            if not args.latency_only:
                quiet_us = 1e6 / rates["quiet rules"]
                print(f"in process, core alone:                 {core_rate:10,.0f} events/s")
                print(f"in process, core + default rules:       {rules_rate:10,.0f} events/s")
                print(f"worker, a rule file that never fires:   {rates['quiet rules']:10,.0f} events/s  "
                      f"({quiet_us:.0f} µs/event)")
            print(f"worker, default rules:                  {rates['default rules']:10,.0f} events/s  ({default_us:.0f} µs/event)")
            if not args.latency_only:
                print(f"rules' share of the worker's per-event cost: {(default_us - quiet_us) / quiet_us:+.0%}")
            print("worker's event-loop ticks late by more than 0.1 / 0.25 / 0.5 / 1 s during the live load: "
                  + " / ".join(str(int(after[b] - before[b])) for b in ("0.1", "0.25", "0.5", "1.0"))
                  + f" (of {int(after['+Inf'] - before['+Inf'])} ticks)")
            if latencies:
                print(f"complaint -> alert on cs.alerts at {args.rate:,}/s ({args.load}): p50 {percentile(latencies, .5) * 1000:.0f} ms, "
                      f"p99 {percentile(latencies, .99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                      f"({len(latencies)} of {probes} probes seen)")
                print("  by 10 s of the live load (p50 / p99 / max, ms): " + "  ".join(
                    f"{lo:.0f}-{lo + 10:.0f}s {_ms(percentile(s, .5))}/{_ms(percentile(s, .99))}/{_ms(max(s))}"
                    for lo, s in _slices(timed, 10.0)))
            else:
                print(f"complaint -> alert: none of {probes} probes seen")
        finally:
            for w in running:
                w.stop()


if __name__ == "__main__":
    main()
