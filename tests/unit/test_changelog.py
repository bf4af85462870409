"""The worker's direct changelog writes encode and group messages as Faust would."""

from streams.changelog import by_partition, encode_key


def test_keys_are_encoded_as_the_tables_own_key_serializer_encodes_them():
    from streams.worker import agents, books, clocks, customers
    for table in (customers, agents, books, clocks):
        for key in ("cust-1", "agent-07", "3|agent-07|2026-11", "@3", "", "客户-\"quoted\"\\x"):
            assert encode_key(key) == table.changelog_topic.prepare_key(key, table.key_serializer)[0]


def test_messages_are_grouped_by_topic_and_partition_keeping_their_order():
    messages = [("c", 1, "a", b"1"), ("k", 1, "@1", b"x"), ("c", 0, "b", b"2"), ("c", 1, "a", None),
                ("c", 1, "d", b"3")]
    assert by_partition(messages) == {
        ("c", 1): [(b'"a"', b"1"), (b'"a"', None), (b'"d"', b"3")],
        ("k", 1): [(b'"@1"', b"x")],
        ("c", 0): [(b'"b"', b"2")],
    }


def test_publish_fills_batches_in_the_transaction_of_the_input_partition_and_rolls_over_when_full():
    import asyncio
    from types import SimpleNamespace

    from aiokafka.producer.message_accumulator import BatchBuilder

    from streams.changelog import publish

    class Producer:             # the two calls of aiokafka's batch API that publish makes
        def __init__(self):
            self.sent = []

        def create_batch(self):
            return BatchBuilder(200, 0, is_transactional=True, key_serializer=None, value_serializer=None)

        async def send_batch(self, batch, topic, *, partition):
            self.sent.append((topic, partition, batch.record_count(), batch._closed))

    producers = {f"app-1-{p}": Producer() for p in (0, 1)}
    app = SimpleNamespace(
        conf=SimpleNamespace(id="app"),
        assignor=SimpleNamespace(group_for_topic={"in.chat": 1}.__getitem__),   # changelogs: in no group
        producer=SimpleNamespace(_transaction_producers=producers,
                                 _trn_locks={tid: asyncio.Lock() for tid in producers}))
    # 100-byte values: one fits a 200-byte batch, a second does not (record overhead)
    messages = [("c-changelog", 0, f"k{i}", b"v" * 100) for i in range(3)] + [("k-changelog", 1, "@1", b"x")]
    asyncio.run(publish(app, messages, inputs="in.chat"))
    assert producers["app-1-0"].sent == [("c-changelog", 0, 1, True)] * 3
    assert producers["app-1-1"].sent == [("k-changelog", 1, 1, True)]
