"""The Kafka topics of SPEC §2 and how an event finds its topic and key.

Chat, orders and feedback are keyed by customer and share one partition count,
so one customer's events (and state) live in one partition; reviews and spot
checks are keyed by agent.
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2

from cspulse.core import TOPIC_OF, Event

INPUT_TOPICS = ("cs.chat", "cs.orders", "cs.feedback", "cs.reviews")
ALERTS = "cs.alerts"
CONSEQUENCES = "cs.consequences"   # month-end consequences, keyed by agent
REJECTED = "cs.rejected"
CO_PARTITIONED = ("cs.chat", "cs.orders", "cs.feedback")


def topic_and_key(event: Event) -> tuple[str, str]:
    """Where an event goes: its topic (without prefix) and its key."""
    tag = event.__struct_config__.tag
    topic = TOPIC_OF[tag]
    if topic == "cs.reviews" or tag == "qa_check":
        return topic, event.agent_id
    return topic, event.customer_id


def key_hash(key: bytes) -> int:
    """What Kafka's default partitioner (Java's, kafka-python's, aiokafka's) hashes a key to:
    the key's partition is `key_hash(key) % partitions`.  (murmur2 in pure Python: the
    rules process hashes its alerts' keys, off the worker's own process.)"""
    return murmur2(key) & 0x7FFFFFFF
