"""The worker's input reader: the input topics read in batches by an aiokafka consumer of its own.

Faust delivers a stream message by message (a thread hop for every fetch, then an
event, sensor calls and an acknowledgement for each message), which capped the
worker at what Faust could hand over: measured with `bench/worker.py`, the queue
between Faust's fetcher and the agent was empty whenever the agent asked for its
next batch, and the worker idled a third of the time.  Here the inputs are read
with `getmany`, in the worker's own event loop, as many as a batch takes.

Faust still owns the group: the worker's agent subscribes to the inputs, so the
assignment, the tables' recovery and the per-partition transactional producers
are Faust's as before.  Faust is kept from fetching the inputs itself
(`keep_faust_off`), and the reader is positioned, partition by partition, at the
first offset the restored state does not hold (the offsets each state includes
are written with it, in the same transaction): the state, not the group's
committed offsets, says where to read, so a restart or a rebalance neither loses
nor repeats an event.  The worker commits the transactions itself
(`streams/worker.py`, `_commit`), with the offsets read so far, so the group's
offsets still show the lag to the usual tools.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition


def keep_faust_off(consumer, topics: frozenset[str]) -> None:
    """Keep Faust's consumer from fetching `topics`: each fetch (`_getmany`, faust-streaming
    0.15) is handed the partitions Faust wants less these, in a set of its own.  (Taking
    them out of Faust's own set of active partitions was not enough: the fetch thread
    reads that set while Faust's resumes put them back, and Faust delivered tens of
    thousands of input messages after a restart.)  With none left, nothing is fetched:
    aiokafka takes no partitions as all of them."""
    if getattr(consumer, "_cspulse_inputs_off", False):
        return
    fetch = consumer._getmany

    async def without_inputs(active_partitions, timeout):
        if active_partitions is not None:
            active_partitions = {tp for tp in active_partitions if tp.topic not in topics}
            if not active_partitions:
                await asyncio.sleep(min(timeout, 0.2))
                return {}
        return await fetch(active_partitions, timeout)

    consumer._getmany = without_inputs
    consumer._cspulse_inputs_off = True


class InputReader:
    """An aiokafka consumer outside any group (the worker's Faust consumer is the member),
    reading committed messages of the partitions it is given from the offsets it is given."""

    def __init__(self, consumer) -> None:
        self.consumer = consumer
        self.started = False
        self._assigned: frozenset[TopicPartition] = frozenset()

    async def start(self) -> None:
        if not self.started:
            await self.consumer.start()
            self.started = True

    async def stop(self) -> None:
        if self.started:
            self.started = False        # first: a `take` it ends raises, and that is no failure
            await self.consumer.stop()

    async def assign(self, positions: dict[TopicPartition, int | None]) -> None:
        """Read these partitions, each from its offset (None: from the earliest)."""
        self._assigned = frozenset(positions)
        self.consumer.assign(list(positions))
        earliest = [tp for tp, offset in positions.items() if offset is None]
        if earliest:
            await self.consumer.seek_to_beginning(*earliest)
        for tp, offset in positions.items():
            if offset is not None:
                self.consumer.seek(tp, offset)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.consumer.seek(tp, offset)

    def assigned(self) -> frozenset[TopicPartition]:
        return self._assigned

    def forget(self) -> None:
        """Take the partitions again from the next `assign` (read since: not processed)."""
        self._assigned = frozenset()

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's end offset as of the last fetch (None: not fetched yet)."""
        if tp not in self._assigned:
            return None
        return self.consumer.highwater(tp)

    async def position(self, tp: TopicPartition) -> int:
        return await self.consumer.position(tp)

    async def take(self, most: int, within_s: float) -> list:
        """Up to `most` records, or what came within `within_s` (at least one, unless none
        came): a backlog comes in full batches, a live record waits at most `within_s`."""
        out: list = []
        deadline = time.monotonic() + within_s
        while len(out) < most:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            batch = await self.consumer.getmany(timeout_ms=max(1, int(left * 1000)), max_records=most - len(out))
            for records in batch.values():
                out += records
        return out
