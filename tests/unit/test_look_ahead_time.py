"""The worker never looks ahead as of a time before its latest look-ahead: that would
start every customer's look-ahead over (`streams.worker._ahead_time`)."""

import pytest

from cspulse.core import Params, Pipeline
from eventkit import at, cust
from streams import worker


def test_a_refresh_whose_now_is_behind_a_batchs_look_ahead_keeps_the_kept_look_aheads(monkeypatch):
    pl = Pipeline(Params(wait_checks_s=(180.0,)))
    pl.track_changes()
    pl.collect_notes()
    for i in range(30):          # 30 customers, each holding one message (within the 600 s lateness)
        pl.feed_line(cust(f"2026-11-03T10:00:{i:02d}", c=f"c{i}"))
    pl.drain_changes()
    batch_now = at("2026-11-03T10:01:00")
    pl.look_ahead_changed(worker._ahead_time(pl, batch_now))
    assert pl.looked_ahead_until == batch_now and len(pl._ahead) == 30

    afresh = []
    monkeypatch.setattr(pl, "_ahead_for", lambda cids, now: afresh.extend(cids))
    # the refresh took its `now` 0.3 s before the batch above ran
    book = worker._as_of(pl, batch_now - 300_000)
    assert afresh == [] and len(pl._ahead) == 30 and pl.looked_ahead_until == batch_now
    # 30 waits held, none answered yet: the view as of the batch's time counts no response
    assert book.kpis("", "2026-11-03")["responses"] == 0


def test_the_look_ahead_time_follows_the_newest_event_when_the_clock_is_behind():
    pl = Pipeline()
    pl.feed_line(cust("2026-11-03T10:00:00"))
    assert worker._ahead_time(pl, at("2026-11-03T09:59:58")) == at("2026-11-03T10:00:00")
    assert worker._ahead_time(pl, at("2026-11-03T10:00:05")) == at("2026-11-03T10:00:05")


def test_full_collections_come_every_15_min_or_less_often_when_they_would_take_long(monkeypatch):
    """The worker thaws its frozen state for one full garbage collection every 900 s, or
    less often so that they hold the loop 0.1% of the time at most: after 1,000 times
    what the last one took, scaled by how much the resident memory grew since."""
    import gc
    clock, frozen, collected = [100.0], [1_000_000], []

    def collect():
        clock[0] += 0.2 * frozen[0] / 1_000_000       # 0.2 s a million objects
        collected.append(clock[0])
        return 0
    monkeypatch.setattr(worker, "_last_full_collection", None)
    monkeypatch.setattr(worker.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(gc, "collect", collect)
    monkeypatch.setattr(worker, "_resident_bytes", lambda: frozen[0] * 500)   # 500 bytes an object
    try:
        def at(t):
            n = len(collected)
            worker._spare_the_collector(t)
            return len(collected) > n
        assert at(0.0)                      # the first refresh: 0.2 s
        assert not at(899.0) and at(900.0)  # 0.2 s x 1,000 = 200 s: the 15 min rule
        frozen[0] = 20_000_000              # 20x the memory: 4 s foreseen, so 4,000 s
        assert not at(900.0 + 3990) and at(900.0 + 4010)
        assert clock[0] == pytest.approx(100.0 + 0.2 + 0.2 + 4.0)
    finally:
        gc.unfreeze()
