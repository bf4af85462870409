"""Held events are written once, in segments with the ids of those applied since
(`streams/held_log.py`): what a restore rebuilds must be exactly what was held."""

import dataclasses
import pickle

import pytest

from cspulse.core import Pipeline, decode
from cspulse.core.ledger import Customer
from eventkit import chatty_stream, cust
from streams import held_log
from streams.held_log import SEGMENT_ENTRIES, HeldSegments, RecentIds, dump_customer, load_customer, load_segment


class Mirror:
    """The worker's write-back into its `customers` and `held` tables, as plain dicts."""

    def __init__(self) -> None:
        self.customers: dict[str, bytes] = {}
        self.held: dict[str, bytes] = {}
        self.segments = HeldSegments(0)
        self.ids = RecentIds()

    def write_back(self, pl: Pipeline) -> None:
        changed, removed, _, _ = pl.drain_changes()
        fresh, applied = pl.drain_held()
        taken = RecentIds.taken(fresh)
        for cid in changed:
            if (c := pl.ledger.customers.get(cid)) is not None:
                self.customers[cid] = dump_customer(c, self.ids.parts(cid, c, taken.get(cid)))
        oldest = pl.oldest_held()
        for key, value in self.segments.add(fresh, applied, oldest):
            self.held[key] = value
        for key in self.segments.expired(oldest):
            del self.held[key]
        for cid in removed:
            if cid not in pl.ledger.customers:
                self.ids.forget(cid)
                self.customers.pop(cid, None)

    def restore(self, replace: bool = True) -> dict[str, Customer]:
        """The customers as a restore reads them; with `replace`, writing goes on from the
        restored segments (as a restarted worker's), else from the mirror's own."""
        segments, held = HeldSegments.restore(0, self.held.items())
        if replace:
            self.segments = segments
        return {cid: load_customer(v, held, cid) for cid, v in self.customers.items()}


# (lines per batch, seconds between lines, segments alive at once at least): 7 lines 1-5 s
# apart span 7-35 s, so the 600 s of allowed lateness keep many batches' segments; 60 lines
# 6-30 s apart span more than the lateness: a batch applies most of what the one before held.
# With `gather` (the worker's 30 s) customers are applied a while after the lateness.
@pytest.mark.parametrize("batch, pace, alive, gather_s", [(7, 1, 17, 0), (60, 6, 1, 0), (7, 1, 17, 30),
                                                          (60, 6, 1, 120)])
def test_customers_restored_from_the_segments_hold_exactly_what_was_held(batch, pace, alive, gather_s):
    for seed in (1, 2, 3):
        lines = chatty_stream(seed, pace)
        pl, mirror = Pipeline(), Mirror()
        pl.gather = gather_s * 10**6
        pl.track_changes()
        most_segments = 0
        for i in range(0, len(lines), batch):
            for line in lines[i:i + batch]:
                pl.feed_line(line)
            mirror.write_back(pl)
            # what the segments remember as unrecorded is only what is still held
            assert mirror.segments.written <= {(cid, item[2]) for cid, c in pl.ledger.customers.items()
                                               for item in c.pending}
            restored = mirror.restore(replace=i // batch % 2 == 0)
            assert set(restored) == set(pl.ledger.customers)
            for cid, c in pl.ledger.customers.items():
                back = restored[cid]
                back.pending.sort()            # a heap either way: the same events, in order
                assert back == dataclasses.replace(c, pending=sorted(c.pending)), (seed, i, cid)
                assert list(back.recent_ids) == list(c.recent_ids)    # in arrival order (the sweep reads the first)
            # a segment lives only while one of its events is held: at most one per
            # batch within the allowed lateness (600 s) and the gathering, whose lines are
            # `batch * pace` s apart at least (the pace is 1-5 s a line, times `pace`)
            most_segments = max(most_segments, len(mirror.held))
            assert len(mirror.held) <= (600 + gather_s) // (batch * pace) + 2
        assert most_segments >= alive
        pl.finish()                          # everything applied: every segment goes
        mirror.write_back(pl)
        assert pl.oldest_held() is None and mirror.held == {}


def test_a_customer_writes_without_its_held_events_in_constant_size():
    """The point of it all: the customer's bytes no longer carry what it holds."""
    pl = Pipeline()
    pl.track_changes()
    for s in range(10):
        pl.feed_line(cust(f"2026-11-03T10:00:{s:02d}", c="c1"))
    one = pl.ledger.customers["c1"]
    assert len(one.pending) == 10       # all within the allowed lateness: held
    ids = RecentIds().parts("c1", one, None)
    whole, written = len(pickle.dumps(one, pickle.HIGHEST_PROTOCOL)), len(dump_customer(one, ids))
    # the written form has 10 ids (each "e…" string a few bytes) instead of 10 (ts, rank, id, Message)
    assert written < whole / 2
    assert len(one.pending) == 10      # and the customer kept them


def test_events_of_one_batch_beyond_a_segments_size_go_to_several():
    pl, mirror = Pipeline(), Mirror()
    pl.track_changes()
    n = SEGMENT_ENTRIES + 5
    for s in range(n):    # one per 0.1 s: all within the allowed lateness, all held
        pl.feed_line(cust(f"2026-11-03T10:00:00.{s:04d}", c=f"c{s % 7}"))
    mirror.write_back(pl)
    assert sorted(mirror.held) == ["0#0", "0#1"]
    assert [len(load_segment(v)[0]) for _, v in sorted(mirror.held.items())] == [SEGMENT_ENTRIES, 5]
    assert sum(len(c.pending) for c in mirror.restore().values()) == n


def test_a_customer_written_whole_by_an_older_version_is_read_as_it_was():
    pl = Pipeline()
    for s in range(3):
        pl.feed_line(cust(f"2026-11-03T10:00:0{s}", c="c1"))
    old = pickle.dumps(pl.ledger.customers["c1"], pickle.HIGHEST_PROTOCOL)
    back = load_customer(old, {}, "c1")
    assert sorted(back.pending) == sorted(pl.ledger.customers["c1"].pending) and len(back.pending) == 3


def test_a_customer_written_by_the_pickling_version_is_read_as_it_was():
    """The version before MessagePack wrote (customer without held events, count, id parts) pickled."""
    pl = Pipeline()
    for s in range(3):
        pl.feed_line(cust(f"2026-11-03T10:00:0{s}", c="c1"))
    c1 = pl.ledger.customers["c1"]
    pending, ids = c1.pending, list(c1.recent_ids.items())
    held = {"c1": {item[2]: item for item in pending}}
    stripped = dataclasses.replace(c1, pending=[], recent_ids={})
    old = pickle.dumps((stripped, len(pending), [pickle.dumps(ids)]), pickle.HIGHEST_PROTOCOL)
    back = load_customer(old, held, "c1")
    assert sorted(back.pending) == sorted(pending) and list(back.recent_ids.items()) == ids
    assert dataclasses.replace(back, pending=[], recent_ids={}) == stripped


def test_every_customer_of_a_simulated_shop_comes_back_equal_with_its_timers_as_tuples():
    """MessagePack is typed by the dataclasses' annotations: sets, tuples and optional
    fields must come back as they were (a timer's key as a list would compare unequal)."""
    from cspulse.simulate import Simulator
    pl = Pipeline()
    pl.track_changes()
    mirror = Mirror()
    lines = list(Simulator(agents=3, days=2, seed=7, conversations_per_agent_day=60).lines())
    for line in lines[:len(lines) * 3 // 4]:      # stopped on day 2: inquiries and waits still open
        pl.feed_line(line)
    mirror.write_back(pl)
    restored = mirror.restore()
    kinds = {kind for c in pl.ledger.customers.values() for _, kind, _ in c.timers}
    assert kinds >= {"inquiry", "wait"} and any(c.orders for c in pl.ledger.customers.values())
    for cid, c in pl.ledger.customers.items():
        back = restored[cid]
        back.pending.sort()
        assert back == dataclasses.replace(c, pending=sorted(c.pending)), cid
        assert all(type(key) is tuple for _, _, key in back.timers)


def test_a_held_event_missing_from_every_segment_is_an_error_not_a_silent_loss():
    pl = Pipeline()
    pl.feed_line(cust("2026-11-03T10:00:00", c="c1"))
    with pytest.raises(LookupError, match="customer c1: holds 1 events, the held segments have 0"):
        load_customer(dump_customer(pl.ledger.customers["c1"], []), {}, "c1")


def test_recent_ids_written_in_parts_come_back_whole_also_after_the_sweep_forgot_some():
    """Each write appends the ids a customer took since; when the daily sweep forgets
    ids older than the de-duplication horizon (2 days), or parts pile up, they are made
    again from the customer: restored ids are the customer's, in order, every time."""
    pl, mirror = Pipeline(), Mirror()
    pl.track_changes()
    parts_seen = set()
    for h in range(0, 4 * 24, 3):      # c1 writes every 3 hours for 4 days; c2 keeps the stream moving
        for c in ("c1", "c2"):
            pl.feed_line(cust(f"2026-11-{3 + h // 24:02d}T{h % 24:02d}:00:0{c[1]}", c=c))
        mirror.write_back(pl)
        restored = mirror.restore()
        live = pl.ledger.customers["c1"]
        assert list(restored["c1"].recent_ids.items()) == list(live.recent_ids.items()), h
        parts_seen.add(len(mirror.ids.kept["c1"][0]))
    # 32 messages, the oldest forgotten: at most 2 days (16) plus the day since the last sweep (8) remain
    assert len(pl.ledger.customers["c1"].recent_ids) <= 24
    assert max(parts_seen) > 1 and 1 in parts_seen    # appended, and made again


def test_a_segment_pickled_by_an_older_version_is_read_as_it_was():
    """Versions before MessagePack segments pickled (held pairs, applied pairs)."""
    pl = Pipeline()
    pl.track_changes()
    for s in range(3):
        pl.feed_line(cust(f"2026-11-03T10:00:0{s}", c="c1"))
    fresh, _ = pl.drain_held()
    old = pickle.dumps((fresh, [("c1", fresh[0][1][2])]), pickle.HIGHEST_PROTOCOL)   # the first applied
    assert load_segment(old) == (fresh, [("c1", fresh[0][1][2])])
    _, held = HeldSegments.restore(0, [("0#0", old)])
    assert sorted(held["c1"].values()) == sorted(item for _, item in fresh[1:])
    new = HeldSegments(0).add(fresh, [], fresh[0][1][0])[0][1]
    assert load_segment(new) == (fresh, [])     # the events come back equal from their JSON lines


def test_only_events_written_in_a_segment_have_their_application_recorded():
    """In a backlog most events are held and applied between two write-backs: they are in
    no segment, and their ids are not written either."""
    pl, mirror = Pipeline(), Mirror()
    pl.track_changes()
    for m in range(0, 60, 2):     # one customer message every 2 minutes for an hour, written back once
        pl.feed_line(cust(f"2026-11-03T10:{m:02d}:00", c=f"c{m % 3}"))
    mirror.write_back(pl)
    ((_, first),) = mirror.held.items()
    held, done = load_segment(first)
    # held: those not stamped before 10:58 less the allowed lateness (10 min), 10:48 … 10:58: 6
    assert len(held) == 6 and min(item[0] for _, item in held) == held[0][1][0]
    assert done == []                          # the 24 applied before were in no segment
    for m in range(60, 70, 2):                  # 11:00 … 11:08: the stream time moves to 10:58
        pl.feed_line(cust(f"2026-11-03T11:{m - 60:02d}:00", c=f"c{m % 3}"))
    mirror.write_back(pl)
    assert sorted(mirror.held) == ["0#0", "0#1"]        # 10:58 is still held in the first
    later, done = load_segment(mirror.held["0#1"])
    # applied and recorded: 10:48 … 10:56 (5, all in the first segment); 11:00 … 11:08 held
    assert sorted(done) == sorted((cid, item[2]) for cid, item in held if item[0] < held[-1][1][0])
    assert len(done) == 5 and len(later) == 5
    assert {c for c in mirror.restore()} == set(pl.ledger.customers)


def test_a_segment_expires_only_after_the_events_whose_application_it_records(monkeypatch):
    """A batch beyond a segment's size is cut in several: the ids it applied go in the last
    segment with held events, not alongside the first.  Here two a segment: c2's e3 (50) is
    held and applied in one batch (gathered ahead of c1's older events), c3's e4 (40) stays
    held.  Cut alongside, e3's application went into the segment of e1, e2, which expires
    first (newest 11 < 40) while e3's own segment lives on: a restore then found e3 held again,
    and c2 holding none of it (found by the two-worker test: the worker could not start)."""
    monkeypatch.setattr(held_log, "SEGMENT_ENTRIES", 2)
    event = decode(cust("2026-11-03T10:00:00"))
    item = lambda ts, eid: (ts, 0, eid, event)      # noqa: E731
    segments, table = HeldSegments(0), {}
    fresh = [("c1", item(10, "e1")), ("c1", item(11, "e2")), ("c2", item(50, "e3")), ("c3", item(40, "e4"))]
    table.update(segments.add(fresh, [("c2", "e3")], oldest_held=10))
    table.update(segments.add([], [("c1", "e1"), ("c1", "e2")], oldest_held=40))      # e1, e2 applied
    for key in segments.expired(40):
        del table[key]
    assert sorted(table) == ["0#1", "0#2"]              # e1, e2's segment went; e3, e4's lives
    _, held = HeldSegments.restore(0, table.items())
    assert {cid: set(mine) for cid, mine in held.items() if mine} == {"c3": {"e4"}}
