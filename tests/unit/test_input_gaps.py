"""The worker checks every record's offset against its state: re-deliveries are
skipped, and a gap (offsets a fetch skipped) is read from Kafka and applied first.
The reader starts each partition at the state's next offset, so neither should
happen; this is the guard if one does."""

import asyncio
from types import SimpleNamespace

import pytest

from streams import worker


def _event(topic, offset):
    """A stand-in for an aiokafka record."""
    return SimpleNamespace(topic=topic, partition=3, offset=offset, key=None, value=b"")


@pytest.fixture
def gaps(monkeypatch):
    read = []

    async def read_gap(topic, p, start, end):
        read.append((topic, p, start, end))
        return [_event(topic, o) for o in range(start, end)]

    monkeypatch.setattr(worker, "_read_gap", read_gap)
    monkeypatch.setitem(worker._applied, 3, {"chat": 9, "orders": worker._UNKNOWN})
    return read


def offsets(events):
    return [(e.topic, e.offset) for e in events]


def test_redeliveries_are_skipped_and_a_gap_in_the_middle_of_a_share_is_read(gaps):
    read = gaps
    # chat's state stands at 9: 8 and 9 are re-deliveries, 10 and 11 follow on, then
    # 12-14 are skipped and 15 delivered; feedback's first event is 0
    share = [_event("chat", o) for o in (8, 9, 10, 11, 15, 16)] + [_event("feedback", 0)]
    kept = asyncio.run(worker._in_step(3, share))
    assert offsets(kept) == [("chat", 10), ("chat", 11), ("chat", 12), ("chat", 13), ("chat", 14),
                             ("chat", 15), ("chat", 16), ("feedback", 0)]
    assert read == [("chat", 3, 12, 15)]          # [start, end): 12, 13, 14


def test_a_gap_at_the_first_event_is_read_from_the_state_onwards(gaps):
    read = gaps
    kept = asyncio.run(worker._in_step(3, [_event("chat", 13), _event("feedback", 2)]))
    # chat: state at 9, first delivery 13 -> 10..12 read; feedback: nothing in the state, starts at 2 -> 0..1
    assert offsets(kept) == [("chat", 10), ("chat", 11), ("chat", 12), ("chat", 13),
                             ("feedback", 0), ("feedback", 1), ("feedback", 2)]
    assert read == [("chat", 3, 10, 13), ("feedback", 3, 0, 2)]


def test_a_state_from_before_offsets_were_kept_takes_every_event_as_it_comes(gaps):
    read = gaps
    kept = asyncio.run(worker._in_step(3, [_event("orders", 5), _event("orders", 9)]))
    assert offsets(kept) == [("orders", 5), ("orders", 9)] and read == []
