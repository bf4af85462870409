"""The worker never looks ahead as of a time before its latest look-ahead: that would
start every customer's look-ahead over (`streams.worker._ahead_time`)."""

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


def test_full_collections_come_every_15_min_or_less_often_when_they_take_long(monkeypatch):
    """The worker thaws its frozen state for one full garbage collection every 900 s, or,
    when one held the loop longer than 0.9 s, after 1,000 times what it took (the loop
    held 0.1% of the time at most)."""
    import gc
    clock = [100.0]
    for took, wait in ((0.2, 900.0), (2.0, 2000.0)):      # 0.2 s: 900 s; 2 s x 1,000 = 2,000 s
        monkeypatch.setattr(worker, "_next_full_collection", 0.0)
        monkeypatch.setattr(worker.time, "perf_counter", lambda: clock[0])
        monkeypatch.setattr(gc, "collect", lambda: clock.__setitem__(0, clock[0] + took) or 0)
        try:
            worker._spare_the_collector(5000.0)
            assert worker._next_full_collection == 5000.0 + wait
            before = clock[0]
            worker._spare_the_collector(5000.0 + wait - 1)    # not yet: no collection
            assert clock[0] == before
        finally:
            gc.unfreeze()
