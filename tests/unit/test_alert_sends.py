"""cs.alerts is sent from two places (after a batch, and as the rules process answers): a
send takes what is queued when it starts, and what is queued meanwhile stays for the next."""

import asyncio

from streams import worker
from streams.topics import key_hash


class _Producer:
    """Stands in for the alerts producer's partition lookup only (what is sent is recorded)."""

    async def partitions_for(self, topic):
        return {0, 1}


def test_alerts_queued_while_a_send_is_under_way_are_sent_next_not_dropped(monkeypatch):
    queue = [(b"a", b"1", key_hash(b"a")), (b"b", b"2", key_hash(b"b"))]
    sent = []

    async def send_batches(producer, topic, p, records):
        if not sent:
            queue.append((b"c", b"3", key_hash(b"c")))      # the rules process answered meanwhile
        sent.extend(records)
        await asyncio.sleep(0)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done]

    monkeypatch.setattr(worker, "_alerts_producer", _Producer())
    monkeypatch.setattr(worker.changelog, "send_batches", send_batches)

    async def two_sends():
        await asyncio.gather(worker._send("cs.alerts", queue), worker._send("cs.alerts", queue))

    asyncio.run(two_sends())
    # the first send took a and b; the second, waiting for the first, took c, queued meanwhile
    assert sorted(sent[:2]) == [(b"a", b"1"), (b"b", b"2")] and sent[2:] == [(b"c", b"3")]
    assert queue == []


def test_each_message_goes_to_the_partition_kafkas_partitioner_gives_its_key_hashed_here_or_in_the_rules_process(
        monkeypatch):
    from aiokafka.partitioner import DefaultPartitioner

    class Three(_Producer):
        async def partitions_for(self, topic):
            return {0, 1, 2}

    keys = [f"slow_response|agent-{i:02d}|conv-{i * 7919}".encode() for i in range(30)]
    queue = [(k, b"v", key_hash(k)) for k in keys]     # (alerts hashed in the rules process, consequences here)
    went: dict[bytes, int] = {}

    async def send_batches(producer, topic, p, records):
        went.update((key, p) for key, _ in records)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done]

    monkeypatch.setattr(worker, "_alerts_producer", Three())
    monkeypatch.setattr(worker.changelog, "send_batches", send_batches)
    asyncio.run(worker._send("cs.alerts", queue))
    assert went == {k: DefaultPartitioner()(k, [0, 1, 2], [0, 1, 2]) for k in keys}
    assert set(went.values()) == {0, 1, 2} and queue == []
