"""How the worker writes held events to its changelogs: once each, not with every change of their customer.

A customer holds its events for the allowed lateness (10 minutes by default)
before they are applied in time order.  Written inside the customer, every event
of a customer writing every few seconds re-wrote all of them: a write-back cost
growing with what is held (measured: 80 µs a customer holding 90 messages, 6.6
µs holding one), which made the worker's batches, and its alerts, slower the
longer a load ran.

Here a customer is written without its held events, with only their ids, and the
events a batch held are written once, together, as one segment of the
partition (`{p}#{seq}` in the `held` table).  A segment is deleted once every
event in it has been applied: all of them are stamped before the oldest event
still held in the partition.  On restore, each customer takes back, from the
segments, the held events its ids name.  A customer written by an older version
(its held events inside) is read as it was.
"""

from __future__ import annotations

import heapq
import pickle
from collections import defaultdict

from cspulse.core.ledger import Customer

TOP = pickle.HIGHEST_PROTOCOL
SEGMENT_ITEMS = 1000     # events in one segment message at most (a message stays well under 1 MB)


def dump_customer(cust: Customer) -> bytes:
    """A customer without its held events, which are named by id."""
    pending = cust.pending
    cust.pending = []
    try:
        return pickle.dumps((cust, [item[2] for item in pending]), TOP)
    finally:
        cust.pending = pending


def load_customer(value: bytes, held: dict[str, dict[str, tuple]], cid: str) -> Customer:
    """A customer from `dump_customer` (or an older whole one), its held events taken
    from `held` (customer id -> event id -> item, as read from the segments)."""
    loaded = pickle.loads(value)
    if isinstance(loaded, Customer):
        return loaded
    cust, ids = loaded
    if ids:
        mine = held.get(cid, {})
        missing = [eid for eid in ids if eid not in mine]
        if missing:
            raise LookupError(f"customer {cid}: held events {missing[:3]} not in any held segment")
        cust.pending = [mine[eid] for eid in ids]
        heapq.heapify(cust.pending)
    return cust


class HeldSegments:
    """One partition's segments of held events: which to write, which to delete."""

    def __init__(self, p: int) -> None:
        self.p = p
        self.next_seq = 0
        self.live: list[tuple[int, int]] = []    # heap (newest event time in it, seq)

    def key(self, seq: int) -> str:
        return f"{self.p}#{seq}"

    def add(self, fresh: list[tuple[str, tuple]], oldest_held: int | None) -> list[tuple[str, bytes]]:
        """The segments (key, value) for events held since the last write: (customer id,
        item) pairs; those stamped before the oldest still held were applied already."""
        if oldest_held is None:
            return []
        fresh = [pair for pair in fresh if pair[1][0] >= oldest_held]
        out = []
        for i in range(0, len(fresh), SEGMENT_ITEMS):
            part = fresh[i:i + SEGMENT_ITEMS]
            seq, self.next_seq = self.next_seq, self.next_seq + 1
            heapq.heappush(self.live, (max(item[0] for _, item in part), seq))
            out.append((self.key(seq), pickle.dumps(part, TOP)))
        return out

    def expired(self, oldest_held: int | None) -> list[str]:
        """Keys of segments whose every event was applied: all stamped before the
        oldest event still held (None: nothing is held)."""
        live, out = self.live, []
        while live and (oldest_held is None or live[0][0] < oldest_held):
            out.append(self.key(heapq.heappop(live)[1]))
        return out

    @classmethod
    def restore(cls, p: int, table_items) -> tuple["HeldSegments", dict[str, dict[str, tuple]]]:
        """The segments of partition p among a table's (key, value) pairs, and their
        events by customer id and event id."""
        segments, held = cls(p), defaultdict(dict)
        head = f"{p}#"
        for key, value in table_items:
            if not key.startswith(head):
                continue
            seq = int(key[len(head):])
            part = pickle.loads(value)
            for cid, item in part:
                held[cid][item[2]] = item
            segments.live.append((max(item[0] for _, item in part), seq))
            segments.next_seq = max(segments.next_seq, seq + 1)
        heapq.heapify(segments.live)
        return segments, held
