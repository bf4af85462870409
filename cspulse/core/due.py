"""Keys to look at again when their time comes: a heap by time, at the cost of what comes due.

A key is queued for one time at a time; queuing it for another leaves its older
heap entry behind, skipped when it comes up (cheaper than finding and removing it).
"""

from __future__ import annotations

import heapq
from typing import Hashable, Iterator


class DueQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, Hashable]] = []
        self._at: dict[Hashable, float] = {}       # key -> the time it is queued for

    def put(self, key: Hashable, due: float) -> None:
        """Queue `key` for `due` (instead of any time it was queued for)."""
        if self._at.get(key) != due:
            self._at[key] = due
            heapq.heappush(self._heap, (due, key))

    def discard(self, key: Hashable) -> None:
        self._at.pop(key, None)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._at

    def pop_due(self, now: float) -> Iterator[Hashable]:
        """Take out, in time order, every key queued for `now` or before (a key queued
        again while this runs, for a time still due, comes out too)."""
        heap, at = self._heap, self._at
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            if at.get(key) == due:
                del at[key]
                yield key
