import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from cspulse import embedded
from cspulse.core import Params
from cspulse.core.shopclock import to_us
from store import repo
from test_produce import read_topic

CSPULSE = str(Path(sys.executable).parent / "cspulse")
MONTH = "2026-11"


def month_kpis(url):
    try:
        engine = repo.connect(url, must_exist=True)
        with Session(engine) as s:
            return repo.read_kpis(MONTH, session=s)
    except (repo.MissingDatabase, OperationalError):   # the worker is still creating it
        return None


class Workers:
    """Worker processes of one app (own topics, group and database) on the shared broker."""

    def __init__(self, kafka, tmp_path, partitions=4):
        tag = uuid.uuid4().hex[:8]
        self.db = f"sqlite:///{tmp_path / 'worker.db'}"
        self.env = {**os.environ, "CSPULSE_KAFKA": kafka, "CSPULSE_TOPIC_PREFIX": f"w{tag}.",
                    "CSPULSE_APP_SUFFIX": f"-{tag}", "CSPULSE_PARTITIONS": str(partitions),
                    "CSPULSE_DATABASE_URL": self.db, "CSPULSE_STORE_INTERVAL_S": "1"}
        self.tmp, self.procs, self.kafka, self.prefix = tmp_path, [], kafka, f"w{tag}."
        self.app_id = f"cspulse-{tag}"     # Faust's app id: its changelogs are `<app id>-<table>-changelog`
        self.ports = []     # each worker's web port (/metrics)

    def produce(self, path, create_only=False):
        """Send a file to the topics (with `create_only`, an empty file: only create the topics)."""
        if create_only:
            path = self.tmp / "nothing.jsonl"
            path.write_text("")
        subprocess.run([CSPULSE, "produce", str(path)], env=self.env, check=True, capture_output=True)

    def start(self, n=0):
        log = open(self.tmp / f"worker{n}-{len(self.procs)}.log", "wb")
        self.ports.append(_free_port())
        env = {**self.env, "CSPULSE_WEB_PORT": str(self.ports[-1])}
        # run in tmp: Faust keeps a data dir (`<app id>-data`) in the working directory
        proc = subprocess.Popen([CSPULSE, "worker", "-l", "info"], env=env, stdout=log, stderr=log,
                                start_new_session=True, cwd=self.tmp)
        self.procs.append(proc)
        return proc

    def wait_for(self, expected, timeout=120):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = month_kpis(self.db)
            if got == expected:
                return got
            time.sleep(1)
        return got

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _free_port():
    from broker import free_port
    return free_port()


@pytest.fixture
def workers(kafka, tmp_path):
    w = Workers(kafka, tmp_path)
    yield w
    w.stop()


def simulated(tmp_path, days=3, traffic=40):
    path = tmp_path / "events.jsonl"
    subprocess.run([CSPULSE, "simulate", "--agents", "3", "--days", str(days), "--traffic", str(traffic),
                    "--duplicates", "0.01", "--bad", "0.01", "--disorder", "120", "-o", str(path)],
                   check=True, capture_output=True)
    return path


def assert_kpis_of_replay(workers, expected, timeout=180):
    """Wait for the stored KPIs to equal `replay`'s; fail naming the counters that differ."""
    got = workers.wait_for(expected, timeout=timeout)
    if got != expected:
        diff = {agent: {k: (got.get(agent, {}).get(k), v) for k, v in kpis.items() if got.get(agent, {}).get(k) != v}
                for agent, kpis in expected.items()}
        pytest.fail(f"stored (worker, replay) differ: { {a: d for a, d in diff.items() if d} }")


def replayed(path, tmp_path):
    # The worker shows KPIs as of now; so does a replay told to evaluate as of now.
    url = f"sqlite:///{tmp_path / 'replay.db'}"
    now = to_us(datetime.now(timezone.utc))
    embedded.replay(embedded.open_sources([str(path)]), engine=repo.connect(url), params=Params(), until=now)
    return month_kpis(url)


def test_worker_gives_exactly_the_kpis_of_replay(workers, tmp_path):
    path = simulated(tmp_path)
    expected = replayed(path, tmp_path)
    workers.produce(path)
    workers.start()
    assert workers.wait_for(expected) == expected


def test_a_file_produced_twice_counts_every_event_once(workers, tmp_path):
    """The second copy's events are duplicates.  Three days of events are older than the
    two-day in-memory horizon, so most of them are found only through the ids the
    worker keeps in the store (those of a copy still in the same batch or commit
    through the ids not yet stored)."""
    path = simulated(tmp_path)
    expected = replayed(path, tmp_path)
    workers.produce(path)
    workers.produce(path)
    workers.start()
    assert_kpis_of_replay(workers, expected)
    # the ids are stored at the partitions' commits (every 2.8 s), the KPIs every second
    engine = repo.connect(workers.db)
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as c:
            kept = c.exec_driver_sql("SELECT count(*), count(DISTINCT part) FROM seen_event").one()
        if kept[1] == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    lines = path.read_bytes().splitlines()
    assert kept[1] == 4                     # every partition's ids, tagged with it
    assert kept[0] <= len(lines)            # once each (the file's duplicates and bad lines are not)


def test_bad_messages_on_an_input_topic_go_to_rejected_and_the_worker_goes_on(workers, tmp_path):
    path = simulated(tmp_path, days=1, traffic=20)
    expected = replayed(path, tmp_path)
    workers.produce(path)   # creates the topics
    producer = KafkaProducer(bootstrap_servers=workers.kafka)
    for bad in (b"{not json", b'{"event_id":"x","type":"order_paid","ts":"2026-11-01T10:00:00+08:00",'
                              b'"order_id":"o","customer_id":"c","amount":-5}'):
        producer.send(workers.prefix + "cs.orders", key=b"c", value=bad)   # past `produce`'s checks
    producer.flush()
    workers.start()
    assert workers.wait_for(expected) == expected
    reasons = [json.loads(r.value)["reason"] for r in read_topic(workers.kafka, workers.prefix + "cs.rejected")]
    assert "amount: must be >= 0" in reasons
    assert any(r.startswith("json: ") for r in reasons)


def committed_everywhere(workers, partitions=4):
    """Whether every partition's state has been committed at least once: its `clocks`
    changelog has a committed end past 0 (a worker that is never fenced aborts nothing).
    Asking must not create the changelog: the broker would make it with one partition."""
    consumer = KafkaConsumer(bootstrap_servers=workers.kafka, isolation_level="read_committed",
                             allow_auto_create_topics=False)
    try:
        topic = f"{workers.app_id}-clocks-changelog"
        if len(consumer.partitions_for_topic(topic) or ()) != partitions:
            return False
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return all(end > 0 for end in consumer.end_offsets(tps).values())
    except Exception:       # the worker has not created its changelogs yet
        return False
    finally:
        consumer.close()


def events_read(port):
    """Input events a worker has read so far (valid and rejected), from its /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name in ("cspulse_events_total", "cspulse_rejected_events_total"))


def wait_until_committed(workers, lines, read_at_least=0, within_s=90):
    """Wait until the last worker started has stored KPIs, every partition has committed
    its state and it has read at least `read_at_least` of the file's `lines` but not all;
    return the KPIs stored by then."""
    deadline = time.monotonic() + within_s
    partial = None
    while time.monotonic() < deadline:
        partial = month_kpis(workers.db)
        if partial and committed_everywhere(workers) and read_at_least <= events_read(workers.ports[-1]) < lines:
            break
        time.sleep(0.1)
    return partial


def kill_once_committed(workers, proc, lines, read_at_least=0, within_s=90):
    """SIGKILL a worker once `wait_until_committed`; return the KPIs stored by then."""
    partial = wait_until_committed(workers, lines, read_at_least, within_s)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return partial


def test_killed_mid_stream_and_restarted_the_worker_still_gives_exactly_replay(workers, tmp_path):
    path = simulated(tmp_path, days=9, traffic=300)
    lines = len(path.read_bytes().splitlines())
    expected = replayed(path, tmp_path)
    workers.produce(path)
    first = workers.start()
    # kill -9 once every partition has committed its state and before the end of the file,
    # so the restart restores committed states and aborts an open transaction.  (Killed
    # that late, the restart restored an inconsistent state in 1 of 4 runs while it took
    # Faust's recovered tables; it reads the changelogs itself now.)
    partial = kill_once_committed(workers, first, lines)
    assert partial and partial != expected, "the worker finished before it could be killed mid-stream"
    workers.start()
    assert workers.wait_for(expected, timeout=180) == expected


def test_a_second_worker_joining_mid_stream_gives_exactly_replay(workers, tmp_path):
    """The second worker joins once the first has committed every partition's state and
    read a third of the stream: the first commits its open transactions on revoke, the
    second rebuilds the partitions it is given from their changelogs, and the two share
    the rest of the stream."""
    path = simulated(tmp_path, days=9, traffic=600)   # long enough to be mid-stream at the join
    lines = len(path.read_bytes().splitlines())
    expected = replayed(path, tmp_path)
    workers.produce(path)
    workers.start(0)
    wait_until_committed(workers, lines, read_at_least=lines / 3, within_s=120)
    workers.start(1)
    assert_kpis_of_replay(workers, expected)
    joiner = (tmp_path / "worker1-1.log").read_text(errors="replace")
    # it took over partitions with committed state (`partition N: M customers, … restored`)
    taken = [int(m) for m in re.findall(r"partition \d+: (\d+) customers", joiner)]
    assert taken and all(n > 0 for n in taken), f"the second worker restored {taken} customers per partition"
