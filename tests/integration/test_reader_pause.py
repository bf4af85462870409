"""The input reader stops fetching the partitions it is told to (`InputReader.pace`) and,
read again, gives every record of them from where it stopped, none skipped or repeated;
against a real broker."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.inputs import InputReader

N = 300     # records a topic: several fetches' worth is not needed, one is enough to be dropped at a pause


async def _fill(kafka, chat, orders):
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    await admin.create_topics([NewTopic(chat, 1, 1), NewTopic(orders, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    for i in range(N):
        await producer.send(chat, f"c{i}".encode(), partition=0)
        await producer.send(orders, f"o{i}".encode(), partition=0)
    await producer.flush()
    await producer.stop()


async def _take(reader, want, within_s=10.0):
    """Records until `want` came or `within_s` passed (a resumed partition is fetched anew)."""
    out = []
    deadline = asyncio.get_running_loop().time() + within_s
    while len(out) < want and asyncio.get_running_loop().time() < deadline:
        out += await reader.take(50, 0.2)
    return out


def test_a_paused_partition_is_not_read_and_resumes_where_it_stopped(kafka, prefix):
    chat, orders = prefix + "cs.chat", prefix + "cs.orders"
    tc, to = TopicPartition(chat, 0), TopicPartition(orders, 0)

    async def run():
        await _fill(kafka, chat, orders)
        reader = InputReader(AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False,
                                              isolation_level="read_committed"))
        await reader.start()
        try:
            await reader.assign({tc: None, to: None})
            first = await reader.take(40, 2.0)          # both fetched: the orders' buffer is full
            seen_orders = [r for r in first if r.topic == orders]
            unknown = reader.left_to_read(TopicPartition(prefix + "cs.feedback", 0))
            reader.pace({to})
            paused = reader.paused
            while_paused = await _take(reader, N - sum(r.topic == chat for r in first), within_s=3.0)
            while_paused += await reader.take(50, 0.5)     # nothing more: orders stay paused
            chat_left = reader.left_to_read(tc)
            orders_left = reader.left_to_read(to)
            reader.pace(set())
            after = await _take(reader, N - len(seen_orders))
            after += await reader.take(50, 0.5)            # nothing repeated after the last
            return first, seen_orders, unknown, paused, while_paused, chat_left, orders_left, after, reader.paused
        finally:
            await reader.stop()

    first, seen_orders, unknown, paused, while_paused, chat_left, orders_left, after, paused_after = asyncio.run(run())
    assert unknown is None                              # not assigned: not known
    assert paused == {to}
    assert all(r.topic == chat for r in while_paused)   # nothing of orders while paused ...
    assert chat_left is False and orders_left is True   # ... chat read to its end, orders waiting
    chat_values = [r.value for r in first + while_paused + after if r.topic == chat]
    order_values = [r.value for r in first + while_paused + after if r.topic == orders]
    assert chat_values == [f"c{i}".encode() for i in range(N)]
    assert order_values == [f"o{i}".encode() for i in range(N)]     # every order once, in order
    assert len(seen_orders) < N and paused_after == frozenset()
