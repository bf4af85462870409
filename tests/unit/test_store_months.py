"""A store write views only the months of a partition's book that may have changed
(`streams.worker._partition_view`): every month once after a restore, then the month of
now, the months the look-ahead touches and those whose buckets changed."""

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


def test_all_months_first_then_only_those_that_may_have_changed():
    worker._ahead_months.pop(P, None)         # as after a restore
    worker._months_touched.pop(P, None)
    pl = _pipeline()

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
