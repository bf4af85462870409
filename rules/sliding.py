"""An agent's notes over a sliding window (`window: 30m` in a rule file), kept as counts.

The agent rules read, over the last `length` of time: responses, their mean time,
slow responses, complaints and flagged orders.  Counting them again from every
note in the window at each look cost what the window holds: at 1,500 responses a
second that grew for the whole 30 minutes (measured: the worker's CPU creeping
from 59% to 75% of a core between 630 s and 800 s of a steady load).  Here each
note is counted once when it comes and once when it leaves (a heap by time, so a
note that came out of order leaves at its own time); response times are summed
in integer µs, so the mean is exact however many come and go.

A note also leaves once it is a window's length behind the newest note counted, not
only when the counts are read: an agent whose counts nobody reads (on a worker that
does not judge the agents, or in a backlog, whose notes are all older than the
wall-clock window) kept every note it ever had (measured: `bench/memory.py --rules`,
58,000 notes more every 5 days of a 20-agent shop).  The window read is thus the
`length` before `now` or before the newest note, whichever is later.
"""

from __future__ import annotations

import heapq
import itertools

from cspulse.core.params import US


class SlidingCounts:
    """One agent's notes over one window length (µs), counted as they come and go."""

    def __init__(self, length: int, slow_s: float) -> None:
        self.length, self.slow_s = length, slow_s     # µs; a response slower than slow_s seconds is slow
        self._heap: list[tuple[int, int, str, int, bool]] = []   # (ts, seq, kind, response µs, slow)
        self._seq = itertools.count()
        self.responses = self.response_us = self.slow = self.complaints = self.flagged = 0
        self.newest = 0                                      # µs: the newest note counted

    def add(self, ts: int, kind: str, response_s: float | None = None) -> None:
        """A note of `kind` ("response", "complaint", "order_flagged") stamped `ts` (µs)."""
        us = round(response_s * US) if kind == "response" else 0
        slow = kind == "response" and response_s > self.slow_s
        heapq.heappush(self._heap, (ts, next(self._seq), kind, us, slow))
        self._count(kind, us, slow, 1)
        if ts > self.newest:
            self.newest = ts
            self._leave(ts - self.length)

    def at(self, now: int) -> dict:
        """The counts over (now - length, now], as the agent rules read them."""
        self._leave(now - self.length)
        n = self.responses
        return {"responses": n, "avg_response_time_s": self.response_us / n / US if n else None,
                "slow_responses": self.slow, "complaints": self.complaints, "abnormal_orders": self.flagged}

    def _leave(self, cut: int) -> None:
        """The notes stamped at or before `cut` leave the counts."""
        heap = self._heap
        while heap and heap[0][0] <= cut:
            _, _, kind, us, slow = heapq.heappop(heap)
            self._count(kind, us, slow, -1)

    def __len__(self) -> int:
        return len(self._heap)

    def _count(self, kind: str, us: int, slow: bool, sign: int) -> None:
        if kind == "response":
            self.responses += sign
            self.response_us += sign * us
            self.slow += sign * slow
        elif kind == "complaint":
            self.complaints += sign
        else:
            self.flagged += sign
