"""A transaction one of whose sends failed is not committed (`changelog.settle`), against a
real broker: aiokafka's own `commit_transaction` commits the rest without a word."""

import asyncio
import contextlib

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.changelog import ChangelogWriteFailed, encode_key, send_batches, settle
from test_changelog_read import _read

TOO_BIG = 5_000     # bytes: over the 1,000 the narrow topic accepts, far under the producer's batch size


async def _topics(kafka, prefix):
    wide, narrow = prefix + "customers-changelog", prefix + "held-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    await admin.create_topics([NewTopic(wide, 1, 1),
                               NewTopic(narrow, 1, 1, topic_configs={"max.message.bytes": "1000"})])
    await admin.close()
    return wide, narrow


@contextlib.asynccontextmanager
async def _producer(kafka, prefix):
    """A transactional producer, stopped at the end (an open transaction left as it is)."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, transactional_id=prefix + "tx")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _half_sent(producer, wide, narrow):
    """One transaction: a customer that is written, a held segment the broker refuses."""
    await producer.begin_transaction()
    sent = await send_batches(producer, wide, 0, [(encode_key("c1"), b"customer")])
    sent += await send_batches(producer, narrow, 0, [(encode_key("0#1"), b"x" * TOO_BIG)])
    return sent


def test_aiokafka_commits_a_transaction_whose_send_failed(kafka, prefix):
    """Why `settle` is needed: the refused batch fails, and the transaction commits the rest."""
    async def run():
        wide, narrow = await _topics(kafka, prefix)
        async with _producer(kafka, prefix) as producer:
            sent = await _half_sent(producer, wide, narrow)
            await producer.commit_transaction()         # no error
            failed = [f.exception() for f in sent]
        return failed, await _read(kafka, TopicPartition(wide, 0)), await _read(kafka, TopicPartition(narrow, 0))

    failed, customers, held = asyncio.run(run())
    assert failed[0] is None and type(failed[1]).__name__ == "MessageSizeTooLargeError"
    assert customers == {"c1": b"customer"} and held == {}      # half a batch committed


def test_settle_refuses_the_commit_and_the_transaction_is_aborted(kafka, prefix):
    async def run():
        wide, narrow = await _topics(kafka, prefix)
        async with _producer(kafka, prefix) as producer:   # left open, as by a worker stopped on the error
            sent = await _half_sent(producer, wide, narrow)
            with pytest.raises(ChangelogWriteFailed, match=r"partition 3: 1 of 2 sends .*MessageSizeTooLarge"):
                await settle(sent, 3)
        async with _producer(kafka, prefix):        # the restarted worker's (same transactional id) aborts it
            pass
        return await _read(kafka, TopicPartition(wide, 0)), await _read(kafka, TopicPartition(narrow, 0))

    customers, held = asyncio.run(run())
    assert customers == {} and held == {}      # nothing of the batch: it is read again from its inputs


def test_settle_passes_sends_that_were_written(kafka, prefix):
    async def run():
        wide, _ = await _topics(kafka, prefix)
        async with _producer(kafka, prefix) as producer:
            await producer.begin_transaction()
            sent = await send_batches(producer, wide, 0, [(encode_key("c1"), b"a"), (encode_key("c2"), b"b")])
            await settle(sent, 0)
            await settle([], 0)
            await producer.commit_transaction()
        return await _read(kafka, TopicPartition(wide, 0))

    assert asyncio.run(run()) == {"c1": b"a", "c2": b"b"}
