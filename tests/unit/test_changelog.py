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
