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

In a backlog the inputs of a partition are read at the broker's pace, not in event
time: the orders of weeks were read while its chat was days in, and a partition's
stream time is its slowest input's, so every order read ahead was held (memory) and
applied again by each look-ahead (CPU).  `inputs_ahead` says which inputs of a
partition have run ahead of the slowest one still to be read; the reader stops
fetching them (`pace`) until that one catches up (Kafka Streams picks the record
with the lowest timestamp for the same reason).
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


def inputs_ahead(tops: dict[str, int], waiting: set[str], paused: set[str], lateness: int) -> set[str]:
    """The inputs of one partition to stop reading: those whose newest event (`tops`, event
    times) is more than `lateness` ahead of the slowest input with records left to read
    (`waiting`; one never heard from counts as the oldest), each read again once it is
    within half of that (`paused`: stopped now), so that a batch's jitter does not stop and
    start a fetch each time.  The slowest input itself is never stopped, so reading goes on;
    with nothing left to read in the others, nothing is stopped."""
    if not waiting:
        return set()
    slowest = min(tops.get(t, -1) for t in waiting)
    if slowest < 0:
        return set(tops)           # hold back everything heard until the silent input speaks
    return {t for t, top in tops.items()
            if top - slowest > (lateness // 2 if t in paused else lateness)}


class InputReader:
    """An aiokafka consumer outside any group (the worker's Faust consumer is the member),
    reading committed messages of the partitions it is given from the offsets it is given."""

    def __init__(self, consumer) -> None:
        self.consumer = consumer
        self.started = False
        self._assigned: frozenset[TopicPartition] = frozenset()
        self.paused: frozenset[TopicPartition] = frozenset()

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
        self.paused = frozenset()       # a new assignment fetches every partition
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

    def left_to_read(self, tp: TopicPartition) -> bool | None:
        """Whether committed records of the partition are left past the read position, as of
        the last fetch (None: not known yet).  Read without waiting, from the consumer's
        state for the partition, where aiokafka's own `highwater` reads."""
        if tp not in self._assigned:
            return None
        try:
            state = self.consumer._subscription.subscription.assignment.state_value(tp)
        except AttributeError:      # no assignment (stopping)
            return None
        if state is None or not state.has_valid_position:
            return None
        end = state.lso if state.lso is not None and state.lso >= 0 else state.highwater
        return None if end is None else state.position < end

    def pace(self, ahead: set[TopicPartition]) -> None:
        """Fetch none of `ahead` (read ahead of their partitions' other inputs) and every other
        assigned partition.  A stopped partition's fetched records are dropped by aiokafka and
        fetched again from the read position when it reads again: nothing is skipped."""
        ahead = frozenset(ahead) & self._assigned
        if ahead == self.paused:
            return
        if stop := ahead - self.paused:
            self.consumer.pause(*stop)
        if go := self.paused - ahead:
            self.consumer.resume(*go)
        self.paused = ahead

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
