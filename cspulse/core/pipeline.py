"""The embedded pipeline: decode, de-duplicate, put back in event-time order, apply.

`Pipeline` chains the pure parts (ledger for customer-keyed events, desk for
agent-keyed ones, book for the sums) behind a reorder buffer: an event is held
until the newest event time seen is `allowed_lateness` past it, then released
in event-time order, so any arrival order within the lateness gives the result
of the in-order stream.  An event already older than that is counted late and
applied at once, as well as it can be.

Equal event times are ordered by a fixed rank (chat before orders, an order's
creation before its payment, …) and then by `event_id`, so the result never
depends on arrival order.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .book import KpiBook
from .desk import AgentDesk
from .events import EVENT_TYPES, Event, Message, Rejected, decode
from .facts import Fact
from .ledger import CustomerLedger
from .params import US, Params
from .shopclock import ShopClock

_CUSTOMER_KEYED = frozenset(EVENT_TYPES[t] for t in ("message", "order_created", "order_paid", "order_cancelled",
                                                     "order_refunded", "order_flagged", "complaint"))
# Rank among equal event times: a customer's message before the reply to it,
# a reply before the order it earns, an order's creation before what follows it.
_SENDER_RANK = {"customer": 0, "bot": 1, "agent": 2}
_RANK = {EVENT_TYPES[t]: r for t, r in (("order_created", 3), ("order_paid", 4), ("order_refunded", 5),
                                        ("order_cancelled", 5), ("order_flagged", 5), ("complaint", 6))}


def _rank(e: Event) -> int:
    kind = type(e)
    if kind is Message:
        return _SENDER_RANK[e.sender]
    return _RANK.get(kind, 7)


@dataclass
class Stats:
    read: int = 0
    applied: int = 0
    duplicates: int = 0
    late: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason (values elided) -> count

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class Pipeline:
    """Events in, KPI book out; pure except for the optional `seen_before` port."""

    def __init__(self, params: Params | None = None,
                 seen_before: Callable[[str], bool] | None = None) -> None:
        """`seen_before(event_id)` answers for ids older than the in-memory horizon;
        set `track_ids` to collect accepted ids (`drain_fresh_ids`) for a store to keep."""
        self.params = params or Params()
        self.clock = ShopClock(self.params)
        self.ledger = CustomerLedger(self.params, self.clock)
        self.desk = AgentDesk(self.clock)
        self.book = KpiBook()
        self.stats = Stats()
        self.seen_before = seen_before
        self.lateness = round(self.params.allowed_lateness_s * US)
        self.horizon = round(self.params.dedup_horizon_s * US)
        self.max_ts: int | None = None
        self.buffer: list[tuple[int, int, str, Event]] = []
        self.recent_ids: dict[str, int] = {}   # event_id -> ts, for the dedup horizon
        self.track_ids = False
        self.fresh_ids: list[tuple[str, int]] = []  # accepted since the owner last drained them
        self._pruned_at = 0
        self.listeners: list[Callable[[Event, int, list[Fact]], None]] = []

    # -- persistence ----------------------------------------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        for transient in ("clock", "seen_before", "listeners", "fresh_ids", "track_ids"):
            state.pop(transient)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.clock = ShopClock(self.params)
        self.ledger.clock = self.desk.clock = self.clock
        self.seen_before, self.listeners, self.fresh_ids, self.track_ids = None, [], [], False

    # -- input ----------------------------------------------------------------

    def feed_line(self, line: bytes | str) -> Rejected | None:
        """Decode and feed one JSON line; return the rejection if it was bad."""
        self.stats.read += 1
        event = decode(line)
        if isinstance(event, Rejected):
            self.stats.rejected[event.kind] += 1
            return event
        self._accept(event)
        return None

    def feed(self, event: Event) -> None:
        """Feed an already decoded event."""
        self.stats.read += 1
        self._accept(event)

    def _accept(self, event: Event) -> None:
        ts = round(event.ts.timestamp() * US)   # to_us, inlined: this runs for every event
        if self._is_duplicate(event.event_id, ts):
            self.stats.duplicates += 1
            return
        self.recent_ids[event.event_id] = ts
        if self.track_ids:
            self.fresh_ids.append((event.event_id, ts))
        self.stats.applied += 1  # accepted: it will be applied, in event-time order
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
        watermark = self.max_ts - self.lateness
        if ts < watermark:
            self.stats.late += 1
        heapq.heappush(self.buffer, (ts, _rank(event), event.event_id, event))
        self._release(watermark)
        if watermark - self._pruned_at > self.horizon:
            self._prune_ids(watermark)

    def _is_duplicate(self, event_id: str, ts: int) -> bool:
        if event_id in self.recent_ids:
            return True
        # Older than the in-memory horizon: ask the store, which has every id it applied.
        if self.seen_before is not None and self.max_ts is not None and ts < self.max_ts - self.horizon:
            return self.seen_before(event_id)
        return False

    def _prune_ids(self, watermark: int) -> None:
        cutoff = watermark - self.horizon
        self.recent_ids = {k: t for k, t in self.recent_ids.items() if t >= cutoff}
        self._pruned_at = watermark

    # -- processing -----------------------------------------------------------

    def _release(self, upto: int) -> None:
        buffer = self.buffer
        while buffer and buffer[0][0] < upto:
            ts, _, _, event = heapq.heappop(buffer)
            self._apply(event, ts)

    def _apply(self, event: Event, ts: int) -> None:
        ledger = self.ledger
        if ledger.timers and ledger.timers[0][0] <= ts or ts >= ledger._next_sweep:
            self.book.add_all(ledger.advance(ts))
        if type(event) in _CUSTOMER_KEYED:
            facts = ledger.apply(event, ts)
        else:
            facts = self.desk.apply(event, ts)
        self.book.add_all(facts)
        for listener in self.listeners:
            listener(event, ts, facts)

    def finish(self, until: int | None = None) -> None:
        """Release every buffered event and fire what time decides up to `until`
        (default: the newest event time seen).  Used at the end of a replay."""
        self._release(1 << 62)
        now = until if until is not None else self.max_ts
        if now is not None:
            self.book.add_all(self.ledger.advance(now))

    def drain_fresh_ids(self) -> list[tuple[str, int]]:
        out, self.fresh_ids = self.fresh_ids, []
        return out

    def run(self, lines: Iterable[bytes | str], until: int | None = None) -> "Pipeline":
        """Feed every line, then finish; convenient for tests and small files."""
        for line in lines:
            self.feed_line(line)
        self.finish(until)
        return self
