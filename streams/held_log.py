"""How the worker writes held events to its changelogs: once each, not with every change of their customer.

A customer holds its events for the allowed lateness (10 minutes by default)
before they are applied in time order.  Written inside the customer, every event
of a customer writing every few seconds re-wrote all of them: a write-back cost
growing with what is held (measured: 80 µs a customer holding 90 messages, 6.6
µs holding one), which made the worker's batches, and its alerts, slower the
longer a load ran.

Here a customer is written without its held events (with their count, a check),
and each batch writes one segment of the partition (`{p}#{seq}` in the `held`
table): the events it held, and the ids of held events it applied.  What a
customer holds is then the events of the live segments less those applied.
Segments are deleted oldest first, once every event in them has been applied
(all are stamped before the oldest event still held): a segment's "applied"
records only name events of that segment or older ones, so none is needed once
those are gone.  A customer written by an older version (its held events inside) is read
as it was.
"""

from __future__ import annotations

import heapq
import itertools
import pickle
from collections import Counter, defaultdict, deque
from operator import itemgetter

import msgspec

from cspulse.core.events import Rejected, decode, encode
from cspulse.core.ledger import Customer, decode_customer, encode_customer

TOP = pickle.HIGHEST_PROTOCOL
SEGMENT_ENTRIES = 1000   # held events or applied ids in one segment message at most (well under 1 MB)
_NOTHING = -1            # the newest event time of a segment that holds none


def dump_customer(cust: Customer, ids: list[bytes]) -> bytes:
    """A customer without its held events (how many it holds instead) and with its recent
    event ids as the pickled parts `RecentIds` keeps: MessagePack of [customer, count,
    parts] (`encode_customer`, 4-5 times faster than the pickle older versions wrote)."""
    return _PACK.encode((msgspec.Raw(encode_customer(cust)), len(cust.pending), ids))


def load_customer(value: bytes, held: dict[str, dict[str, tuple]], cid: str) -> Customer:
    """A customer from `dump_customer` (or a pickle of an older version, the customer whole
    or as (customer, count, parts)), its held events taken from `held` (customer id ->
    event id -> item, as `HeldSegments.restore` gives)."""
    if value[:1] == _PICKLE:
        loaded = pickle.loads(value)
        if isinstance(loaded, Customer):
            return loaded
        cust, count, ids = loaded
    else:
        raw, count, ids = _UNPACK.decode(value)
        cust = decode_customer(raw)
    mine = list(held.get(cid, {}).values())
    if len(mine) != count:
        raise LookupError(f"customer {cid}: holds {count} events, the held segments have {len(mine)}")
    heapq.heapify(mine)
    cust.pending = mine
    for part in ids:
        cust.recent_ids.update(pickle.loads(part))
    return cust


_PACK = msgspec.msgpack.Encoder()
_UNPACK = msgspec.msgpack.Decoder(tuple[msgspec.Raw, int, list[bytes]])
_PICKLE = b"\x80"     # the first byte of a pickle (protocol 2 and later); MessagePack's array is 0x90-0x9f
_SEGMENT = msgspec.msgpack.Decoder(tuple[list[tuple[str, int, int, str, bytes]], list[tuple[str, str]]])


def dump_segment(part: list[tuple[str, tuple]], done: list[tuple[str, str]]) -> bytes:
    """A segment's held events ((customer id, (ts, rank, event id, event)) pairs) and
    applied ids ((customer id, event id) pairs) as MessagePack, each event as its JSON
    line: 1.4 µs an event against 8.7 pickled (measured in process on the simulated
    shop's events), and read back by the input's own decoder."""
    return _PACK.encode(([(cid, ts, rank, eid, encode(event)) for cid, (ts, rank, eid, event) in part], done))


def load_segment(value: bytes) -> tuple[list[tuple[str, tuple]], list[tuple[str, str]]]:
    """A segment from `dump_segment`, or pickled by an older version."""
    if value[:1] == _PICKLE:
        return pickle.loads(value)
    rows, done = _SEGMENT.decode(value)
    part = []
    for cid, ts, rank, eid, line in rows:
        event = decode(line)
        if isinstance(event, Rejected):      # (written from an event this decoder accepted)
            raise ValueError(f"held segment: event {eid} does not decode: {event.reason}")
        part.append((cid, (ts, rank, eid, event)))
    return part, [tuple(pair) for pair in done]


class RecentIds:
    """Each customer's recent event ids (kept for de-duplication, two days by default),
    as pickled parts appended batch by batch, so writing a customer does not pickle them
    all again: pickling a few hundred ids scattered over a large heap cost 40-50 µs a
    customer.  The parts are made again from the customer's ids when they no longer add
    up (the daily sweep forgot some) and when there are `MERGE` of them."""

    MERGE = 16

    def __init__(self) -> None:
        self.kept: dict[str, tuple[list[bytes], int]] = {}    # customer -> (parts, ids in them)

    def parts(self, cid: str, cust: Customer, new: int | None) -> list[bytes]:
        """The parts of a customer's ids, given how many it took since: the newest of its
        ids (a dict keeps them in the order taken; the sweep makes a customer's ids
        afresh, and they no longer add up)."""
        ids = cust.recent_ids
        parts, count = self.kept.get(cid, ((), -1))
        if not new and count == len(ids):
            return list(parts)
        if new and count + new == len(ids) and len(parts) < self.MERGE:
            newest = list(itertools.islice(reversed(ids.items()), new))
            newest.reverse()
            parts = [*parts, pickle.dumps(newest, TOP)]
        else:
            parts = [pickle.dumps(list(ids.items()), TOP)] if ids else []
        self.kept[cid] = (parts, len(ids))
        return parts

    def forget(self, cid: str) -> None:
        self.kept.pop(cid, None)

    @staticmethod
    def taken(fresh: list[tuple[str, tuple]]) -> Counter:
        """How many event ids each customer took, from the events held in a batch (every
        event a customer accepts is held)."""
        return Counter(map(itemgetter(0), fresh))


class HeldSegments:
    """One partition's segments of held events: which to write, which to delete."""

    def __init__(self, p: int) -> None:
        self.p = p
        self.next_seq = 0
        self.live: deque[tuple[int, int]] = deque()    # (newest event time in it, seq), oldest first
        # (customer id, event id) of the events in a live segment not yet recorded as applied
        # (each held event's application is recorded once: it leaves here then)
        self.written: set[tuple[str, str]] = set()

    def key(self, seq: int) -> str:
        return f"{self.p}#{seq}"

    def add(self, fresh: list[tuple[str, tuple]], applied: list[tuple[str, str]],
            oldest_held: int | None) -> list[tuple[str, bytes]]:
        """The segments (key, value) of one batch: the events it held, (customer id,
        item) pairs, and those it applied, (customer id, event id) pairs.  Events
        stamped before the oldest still held are applied already, and an applied id
        matters only if its event is in a live segment: in a backlog most events are
        held and applied between two write-backs, in no segment, and recording every
        one of them was a fifth of the write-back (py-spy, `bench/worker.py --days 10`)."""
        if oldest_held is None:
            fresh = []
        else:
            fresh = [pair for pair in fresh if pair[1][0] >= oldest_held]
        written = self.written
        written.update((cid, item[2]) for cid, item in fresh)    # (one may be applied in this batch already)
        if applied and written:
            applied = [pair for pair in applied if pair in written]
            written.difference_update(applied)
        else:
            applied = []        # they name events of no segment
        # Several segments when there are more than SEGMENT_ENTRIES: the applied ids go in the
        # last one with held events and after it, never before, so a segment's applied ids name
        # events of that segment or older ones only, and it expires after them.  (Cut alongside
        # the held events, the first segment got ids of events held in the second; it expired
        # first, and a restore found those events held again: "customer …: holds 0 events, the
        # held segments have 1", a worker that could not start, found by the two-worker test.)
        n = SEGMENT_ENTRIES
        parts = [fresh[i:i + n] for i in range(0, len(fresh), n)] or [[]]
        dones = [applied[i:i + n] for i in range(0, len(applied), n)] or [[]]
        rows = [(part, []) for part in parts[:-1]] + [(parts[-1], dones[0])] + [([], done) for done in dones[1:]]
        out = []
        for part, done in rows:
            if not (part or done):
                continue
            seq, self.next_seq = self.next_seq, self.next_seq + 1
            self.live.append((max((item[0] for _, item in part), default=_NOTHING), seq))
            out.append((self.key(seq), dump_segment(part, done)))
        return out

    def expired(self, oldest_held: int | None) -> list[str]:
        """Keys of the oldest segments whose every event was applied: all stamped before
        the oldest event still held (None: nothing is held)."""
        live, out = self.live, []
        while live and (oldest_held is None or live[0][0] < oldest_held):
            out.append(self.key(live.popleft()[1]))
        if not live:
            self.written.clear()        # (no segment lives: none of its events can be unrecorded)
        return out

    @classmethod
    def restore(cls, p: int, table_items) -> tuple["HeldSegments", dict[str, dict[str, tuple]]]:
        """The segments of partition p among a table's (key, value) pairs, and the
        events still held, by customer id and event id."""
        segments, held, applied = cls(p), defaultdict(dict), []
        head = f"{p}#"
        found = []
        for key, value in table_items:
            if key.startswith(head):
                part, done = load_segment(value)
                for cid, item in part:
                    held[cid][item[2]] = item
                applied += done
                found.append((int(key[len(head):]), max((item[0] for _, item in part), default=_NOTHING)))
        for cid, eid in applied:
            mine = held.get(cid)
            if mine is not None:
                mine.pop(eid, None)
        found.sort()
        segments.live.extend((newest, seq) for seq, newest in found)
        segments.written = {(cid, eid) for cid, mine in held.items() for eid in mine}
        segments.next_seq = found[-1][0] + 1 if found else 0
        return segments, held
