"""A store write views only the months of a partition's book that may have changed
(`streams.worker._partition_view`): every month once after a restore, then the month of
now, the months the look-ahead touches and those whose buckets changed; and as of now
only once the partition is not in a backlog."""

from cspulse.core import Params, Pipeline
from eventkit import agent, at, cust
from streams import worker

NOW = at("2026-11-28T12:00:00")
P = 7


def _pipeline() -> Pipeline:
    pl = Pipeline(Params())
    pl.track_changes()
    for line in (cust("2026-10-30T10:00:00", c="c1"), agent("2026-10-30T10:01:00", c="c1"),
                 cust("2026-11-27T10:00:00", c="c2"), agent("2026-11-27T10:01:00", c="c2")):
        pl.feed_line(line)
    pl.drain_changes()          # written back (the test says which months that touched, below)
    return pl


def _restored(read_to_end: bool) -> Pipeline:
    worker._ahead_months.pop(P, None)         # as after a restore
    worker._months_touched.pop(P, None)
    for t in worker.ORDERED_INPUTS:
        (worker._read_to_end.add if read_to_end else worker._read_to_end.discard)((P, t))
    return _pipeline()


def test_all_months_first_then_only_those_that_may_have_changed():
    pl = _restored(read_to_end=True)

    first = worker._partition_view(P, pl, NOW)
    assert sorted(first) == ["2026-10", "2026-11"]
    # c1's wait answered after 60 s, applied (the November events moved the stream past it)
    assert first["2026-10"]["a1|2026-10-30"]["responses"] == 1
    # c2's two messages are still held (within the 600 s allowed lateness): the look-ahead counts them
    assert first["2026-11"]["a1|2026-11-27"]["responses"] == 1

    assert sorted(worker._partition_view(P, pl, NOW)) == ["2026-11"]    # the month of now (and of the look-ahead)

    # a late answer on October 30 (c3 waited at 10:02, answered 10:03): applied at once, not yet written back
    pl.feed_line(cust("2026-10-30T10:02:00", c="c3"))
    pl.feed_line(agent("2026-10-30T10:03:00", c="c3"))
    late = worker._partition_view(P, pl, NOW)
    assert sorted(late) == ["2026-10", "2026-11"] and late["2026-10"]["a1|2026-10-30"]["responses"] == 1 + 1

    pl.drain_changes()
    worker._months_touched[P].add("2026-09")   # a write-back changed a September bucket
    assert sorted(worker._partition_view(P, pl, NOW)) == ["2026-09", "2026-11"]
    assert sorted(worker._partition_view(P, pl, NOW)) == ["2026-11"]


def test_in_a_backlog_the_view_is_the_book_as_applied_and_as_of_now_once_read_to_the_end():
    pl = _restored(read_to_end=False)      # events of days ago, inputs not read to their end: a backlog
    backlog = worker._partition_view(P, pl, NOW)
    assert sorted(backlog) == ["2026-10", "2026-11"]
    assert backlog["2026-10"]["a1|2026-10-30"]["responses"] == 1
    assert "a1|2026-11-27" not in backlog["2026-11"]        # c2's messages are held: nothing applied yet

    for t in worker.ORDERED_INPUTS:
        worker._read_to_end.add((P, t))
    caught_up = worker._partition_view(P, pl, NOW)
    assert sorted(caught_up) == ["2026-11"] and caught_up["2026-11"]["a1|2026-11-27"]["responses"] == 1

    for t in worker.ORDERED_INPUTS:       # a backlog again: the look-ahead's facts leave the stored view
        worker._read_to_end.discard((P, t))
    assert worker._partition_view(P, pl, NOW) == {"2026-11": {}}
    # at shutdown the view is as of now, backlog or not
    assert worker._partition_view(P, pl, NOW, final=True)["2026-11"]["a1|2026-11-27"]["responses"] == 1
