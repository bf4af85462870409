"""A fetch aiokafka drops half-read is freed by reference counting (streams/fetch_cycles.py):
the worker keeps the cyclic collector off most of the heap, so a cycle holding a fetch
response's bytes would stay for up to 15 minutes.  aiokafka's own PartitionRecords, on
a record set built by aiokafka's own batch builder; no broker is needed for this."""

import gc
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from streams import fetch_cycles

READ_UNCOMMITTED = 0
ROOT = Path(__file__).resolve().parents[2]


def fetched(n: int, first_offset: int = 0) -> PartitionRecords:
    """One partition's share of a fetch response: n records from `first_offset` on."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i in range(n):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=b"k%d" % i, value=b"v" * 100, headers=[])
    batch = bytearray(builder.build())
    batch[0:8] = first_offset.to_bytes(8, "big")     # the batch's base offset, as the broker sets it
    return PartitionRecords(TopicPartition("chat_events", 0), MemoryRecords(bytes(batch)), [], first_offset,
                            None, None, True, READ_UNCOMMITTED)


@pytest.fixture
def no_collector():
    fetch_cycles.install()
    gc.disable()
    yield
    gc.enable()


def test_a_fetch_dropped_half_read_is_freed_without_the_collector(no_collector):
    records = fetched(10)
    assert [next(records).offset for _ in range(3)] == [0, 1, 2]
    assert records.next_fetch_offset == 3
    gone, iterator_gone = weakref.ref(records), weakref.ref(records._records_iterator)
    del records                                 # what aiokafka does with a paused partition's fetch
    assert gone() is None and iterator_gone() is None


def test_a_fetch_dropped_unread_is_freed_without_the_collector(no_collector):
    records = fetched(10)
    gone = weakref.ref(records)
    del records
    assert gone() is None


def test_a_fetch_read_to_its_end_gives_every_record_once(no_collector):
    records = fetched(5, first_offset=40)
    read = list(records)                        # aiokafka's getall iterates the same way
    assert [(r.offset, r.key, r.timestamp) for r in read] == \
        [(40 + i, b"k%d" % i, 1_700_000_000_000 + i) for i in range(5)]
    assert records.next_fetch_offset == 45      # the offset after the last one: the next fetch's


def test_the_cspulse_command_installs_it():
    # (a fresh interpreter: the tests above install it in this one)
    probe = ("import streams.app, streams.fetch_cycles as f; from aiokafka.consumer.fetcher import PartitionRecords as P; "
             "print(P.__init__ is f._init_without_cycle)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "True"
