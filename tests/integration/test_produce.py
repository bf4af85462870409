import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from cspulse.core import TOPIC_OF, Rejected, decode

CSPULSE = str(Path(sys.executable).parent / "cspulse")


def read_topic(bootstrap, topic):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    out = []
    while any(consumer.position(tp) < end[tp] for tp in parts):
        for records in consumer.poll(timeout_ms=1000).values():
            out.extend(records)
    consumer.close()
    return out


def test_produce_sends_each_event_to_its_topic_keyed_and_bad_lines_only_to_rejected(kafka, prefix, tmp_path):
    events = tmp_path / "events.jsonl"
    subprocess.run([CSPULSE, "simulate", "--agents", "3", "--days", "2", "--traffic", "30", "--bad", "0.02",
                    "--duplicates", "0.01", "-o", str(events)], check=True, capture_output=True)
    result = subprocess.run([CSPULSE, "produce", str(events), "--topic-prefix", prefix, "--partitions", "4"],
                            capture_output=True, text=True, env={**os.environ, "CSPULSE_KAFKA": kafka})
    assert result.returncode == 0, result.stderr

    expected, bad = Counter(), 0
    for line in events.read_bytes().splitlines():
        e = decode(line)
        if isinstance(e, Rejected):
            bad += 1
        else:
            expected[TOPIC_OF[e.__struct_config__.tag]] += 1
    assert bad > 0
    partition_of_customer = defaultdict(set)
    for topic, count in expected.items():
        records = read_topic(kafka, prefix + topic)
        assert len(records) == count, topic
        for r in records:
            e = decode(r.value)
            tag = e.__struct_config__.tag
            key = e.agent_id if topic == "cs.reviews" or tag == "qa_check" else e.customer_id
            assert r.key == key.encode()
            if topic != "cs.reviews" and tag != "qa_check":
                partition_of_customer[key].add(r.partition)
    # chat, orders and feedback are co-partitioned: a customer lives in one partition
    assert all(len(parts) == 1 for parts in partition_of_customer.values())
    rejected = [json.loads(r.value) for r in read_topic(kafka, prefix + "cs.rejected")]
    assert len(rejected) == bad
    assert all(r["reason"] and r["raw"] and r["source"].startswith(str(events)) for r in rejected)
    assert "rejected" in result.stdout


def test_produce_without_a_broker_says_what_to_do(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_text("")
    result = subprocess.run([CSPULSE, "produce", str(events)], capture_output=True, text=True,
                            env={**os.environ, "CSPULSE_KAFKA": "127.0.0.1:1"}, timeout=60)
    assert result.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1: start one with `make kafka`" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_review_command_with_kafka_sends_the_event_to_cs_reviews_keyed_by_agent(kafka, prefix):
    env = {**os.environ, "CSPULSE_KAFKA": kafka, "CSPULSE_TOPIC_PREFIX": prefix}
    out = subprocess.run([CSPULSE, "review", "manager", "agent-02", "2026-11", "77.5", "--reviewer", "manager-1",
                          "--kafka", "--at", "2026-12-01T10:00:00+08:00"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"-> Kafka {kafka}" in out.stdout
    record, = read_topic(kafka, prefix + "cs.reviews")
    event = json.loads(record.value)
    assert record.key == b"agent-02"
    assert {k: event[k] for k in ("type", "agent_id", "period", "score", "reviewer", "ts")} == {
        "type": "manager_review", "agent_id": "agent-02", "period": "2026-11", "score": 77.5,
        "reviewer": "manager-1", "ts": "2026-12-01T10:00:00+08:00"}
