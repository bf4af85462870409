"""The worker restores a partition from its changelogs read by itself (`changelog.read_to_end`):
every key's last committed value, against a real broker with real transactions."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import pytest

from streams.changelog import MissingPartitions, check_partitions, encode_key, read_to_end


async def _read(bootstrap, tp):
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        return (await read_to_end(consumer, [tp], within_s=30))[tp]
    finally:
        await consumer.stop()


def test_read_to_end_gives_the_last_committed_value_of_each_key(kafka, prefix):
    topic = prefix + "customers-changelog"
    tp = TopicPartition(topic, 0)

    async def run():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 1, 1)])
        await admin.close()
        assert await _read(kafka, tp) == {}                     # an empty changelog

        killed = AIOKafkaProducer(bootstrap_servers=kafka, transactional_id=prefix + "tx")
        await killed.start()
        async with killed.transaction():
            for key, value in (("c1", b"v1"), ("c2", b"v2"), ("c3", b"v3")):
                await killed.send(topic, key=encode_key(key), value=value)
        async with killed.transaction():
            await killed.send(topic, key=encode_key("c1"), value=b"v1 again")
            await killed.send(topic, key=encode_key("c2"), value=None)      # deleted
        await killed.begin_transaction()
        await (await killed.send(topic, key=encode_key("c3"), value=b"never committed"))
        # left open (the worker was killed): the committed end stops before it
        left_open = await _read(kafka, tp)

        # the next owner's producer, same transactional id, aborts it
        successor = AIOKafkaProducer(bootstrap_servers=kafka, transactional_id=prefix + "tx")
        await successor.start()
        after_abort = await _read(kafka, tp)
        await successor.stop()
        return left_open, after_abort

    left_open, after_abort = asyncio.run(run())
    assert left_open == {"c1": b"v1 again", "c3": b"v3"}
    assert after_abort == {"c1": b"v1 again", "c3": b"v3"}


def test_a_changelog_lacking_a_partition_is_refused_with_what_to_do(kafka, prefix):
    # (a client asking for the topic before the worker made it: the broker made it with one partition)
    topic = prefix + "clocks-changelog"

    async def run():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 1, 1)])
        await admin.close()
        await check_partitions(kafka, [TopicPartition(topic, 0)])       # there: no complaint
        await check_partitions(kafka, [TopicPartition(topic, 0), TopicPartition(topic, 2)])

    with pytest.raises(MissingPartitions, match=r"has 1 partition\(s\) and no partition \[2\].*CSPULSE_PARTITIONS"):
        asyncio.run(run())
