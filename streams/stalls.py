"""Input partitions that stopped moving while messages wait for them.

faust-streaming can leave a partition unfetched after a rebalance (faust-streaming
issue #629, open).  Seen here: a worker joining mid-backlog never received one
input topic's two partitions (6 of 172 trials) while it read the other inputs to
their end, and sat idle with those messages waiting; Faust still counted them
active, not paused, not buffered.  The worker cannot tell that from a slow input
by looking at Faust, so it watches the offsets: a partition it holds whose end
lies past what its state has applied, and whose applied offset has not moved for
`after_s`, is stalled (the worker then seeks it, which restarted the fetching).
Pure: the worker passes the offsets and the clock.
"""

from __future__ import annotations

from collections.abc import Hashable

Key = Hashable   # a partition: the worker passes Kafka topic-partitions


class StallWatch:
    """Remembers when each input partition last moved; says which are stalled."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._moved: dict[Key, tuple[int, float]] = {}    # key -> (applied offset, when it was last seen to change)

    def forget(self) -> None:
        """After a rebalance: every partition starts its clock again."""
        self._moved.clear()

    def check(self, applied: dict[Key, int], ends: dict[Key, int], now: float) -> list[Key]:
        """The stalled keys, given each held partition's applied offset (-1: none yet)
        and its end offset (the next offset to be written)."""
        stalled = []
        for key, done in applied.items():
            seen = self._moved.get(key)
            waiting = ends.get(key, 0) > done + 1
            if seen is None or seen[0] != done or not waiting:
                self._moved[key] = (done, now)
            elif now - seen[1] >= self.after_s:
                stalled.append(key)
        for key in [k for k in self._moved if k not in applied]:
            del self._moved[key]      # no longer held
        return sorted(stalled)
