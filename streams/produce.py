"""`cspulse produce`: JSON-lines files onto the input topics (kafka-python, synchronous).

Each line is validated with the core's own decoder: a good event goes to its
topic with its key, unchanged; a bad one goes only to the dead-letter topic
with its reason, and is counted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from cspulse.core import Rejected, decode
from cspulse.embedded import Source
from streams.topics import ALERTS, CONSEQUENCES, CO_PARTITIONED, INPUT_TOPICS, REJECTED, topic_and_key


class KafkaUnavailable(Exception):
    """The broker cannot be reached or refused what we asked; the message says what to do."""


@dataclass
class ProduceSummary:
    sent: Counter = field(default_factory=Counter)       # topic -> messages
    rejected: Counter = field(default_factory=Counter)   # reason -> lines
    read: int = 0


def ensure_topics(bootstrap: str, prefix: str, partitions: int) -> dict[str, int]:
    """Create missing topics; refuse when the co-partitioned ones disagree on partitions."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cspulse-admin", bootstrap_timeout_ms=5_000)
    except KafkaTimeoutError:
        raise KafkaUnavailable(f"cannot reach Kafka at {bootstrap}: start one with `make kafka` "
                               f"or set CSPULSE_KAFKA") from None
    try:
        wanted = [prefix + t for t in (*INPUT_TOPICS, ALERTS, CONSEQUENCES, REJECTED)]
        existing = set(admin.list_topics())
        missing = {t: {"num_partitions": partitions, "replication_factor": 1} for t in wanted if t not in existing}
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass   # another producer or worker was first
        counts = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(wanted)}
    finally:
        admin.close()
    shared = {counts[prefix + t] for t in CO_PARTITIONED}
    if len(shared) > 1:
        raise KafkaUnavailable(
            "chat, orders and feedback topics must have the same partition count (one customer, one partition): "
            + ", ".join(f"{prefix + t}={counts[prefix + t]}" for t in CO_PARTITIONED))
    return counts


def produce(sources: list[Source], *, bootstrap: str, prefix: str = "", partitions: int = 8,
            progress: Callable[[str, int, int], None] | None = None) -> ProduceSummary:
    ensure_topics(bootstrap, prefix, partitions)
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="cspulse-produce", linger_ms=20,
                             batch_size=512 * 1024, max_in_flight_requests_per_connection=5)
    summary = ProduceSummary()
    try:
        for src in sources:
            done = 0
            for lineno, line in enumerate(src.lines, 1):
                done += len(line)
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                summary.read += 1
                event = decode(line)
                if isinstance(event, Rejected):
                    summary.rejected[event.kind] += 1
                    envelope = {"reason": event.reason, "source": f"{src.name}:{lineno}",
                                "event_id": event.event_id, "raw": line.decode("utf-8", "replace")}
                    producer.send(prefix + REJECTED, value=json.dumps(envelope, ensure_ascii=False).encode(),
                                  key=(event.event_id or "").encode() or None)
                    summary.sent[REJECTED] += 1
                    continue
                topic, key = topic_and_key(event)
                producer.send(prefix + topic, value=line, key=key.encode())
                summary.sent[topic] += 1
                if progress and lineno % 20_000 == 0:
                    progress(src.name, done, src.size or 0)
            if progress:
                progress(src.name, done, src.size or done)
        producer.flush()
    except KafkaError as e:
        raise KafkaUnavailable(f"Kafka at {bootstrap} failed: {e}") from None
    finally:
        producer.close()
    return summary
