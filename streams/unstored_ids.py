"""A partition's applied event ids on their way to the store, kept whole batch by batch.

The worker stores every applied event id before the transaction of the state that
holds it commits, tagged with the write-back it came with (its epoch: a restore
forgets the ids of write-backs never committed; `streams/worker.py`).  Until they are
stored they are looked up here.  A write-back hands over the pipeline's own dict of
the ids it accepted since (event id -> event time) as one chunk with its epoch, and a
chunk goes once stored, whole: no step per event between the pipeline and the store
(one was 4-5% of the worker's time: a tuple and a dict entry per event at the
write-back, a row and a removal per event at the commit; py-spy, bench/worker.py).
"""

from __future__ import annotations

import itertools


class UnstoredIds:
    def __init__(self) -> None:
        self.chunks: list[tuple[int, dict[str, int]]] = []     # (epoch, event id -> time), oldest first

    def add(self, epoch: int, ids: dict[str, int]) -> None:
        """The ids a write-back of this epoch hands over (the dict is kept, not copied)."""
        if ids:
            self.chunks.append((epoch, ids))

    def __len__(self) -> int:
        return sum(len(ids) for _, ids in self.chunks)

    def __contains__(self, event_id: str) -> bool:
        # (a lookup for an event older than the pipeline's memory only: rare; the chunks
        # are those of the write-backs since the last commit, unless the store is down)
        return any(event_id in ids for _, ids in self.chunks)

    def stored(self, chunks: list[tuple[int, dict[str, int]]]) -> None:
        """These chunks (taken from `chunks` before) are in the store: they go; any added since stay."""
        gone = {id(chunk) for chunk in chunks}
        self.chunks = [chunk for chunk in self.chunks if id(chunk) not in gone]

    def keep_newest(self, n: int) -> int:
        """Drop the oldest ids beyond `n`; returns how many went."""
        drop = left = len(self) - n
        if drop <= 0:
            return 0
        whole = 0               # the oldest chunks that go whole
        while left and len(self.chunks[whole][1]) <= left:
            left -= len(self.chunks[whole][1])
            whole += 1
        del self.chunks[:whole]
        if left:                # and the oldest of the next
            ids = self.chunks[0][1]
            for event_id in list(itertools.islice(ids, left)):
                del ids[event_id]
        return drop
