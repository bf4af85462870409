"""While the store cannot be written, the worker's applied ids wait for it, at most
`IDS_UNSTORED_MAX`: beyond it the oldest of each partition go, counted
(`streams.worker._bound_unstored_ids`).  They wait as the write-backs handed them over,
a chunk each (`streams/unstored_ids.py`)."""

from streams import worker
from streams.unstored_ids import UnstoredIds


def _ids(prefix: str, n: int, per_chunk: int) -> UnstoredIds:
    ids = UnstoredIds()
    for epoch, start in enumerate(range(0, n, per_chunk), 1):
        ids.add(epoch, {f"{prefix}{i}": i for i in range(start, min(n, start + per_chunk))})
    return ids


def test_beyond_the_bound_each_partition_keeps_its_share_of_the_newest_ids(monkeypatch):
    monkeypatch.setattr(worker, "IDS_UNSTORED_MAX", 1_000)
    monkeypatch.setattr(worker, "_unstored_ids", {1: _ids("a", 1_500, 400), 2: _ids("b", 500, 100)})
    before = worker.metrics.ids_dropped._value.get()
    worker._bound_unstored_ids()
    # 2,000 ids for a bound of 1,000: each partition keeps half, its newest.  Partition 1's
    # chunks hold 0-399, 400-799, 800-1199, 1200-1499: the first goes whole, 350 of the second.
    a, b = worker._unstored_ids[1], worker._unstored_ids[2]
    assert (len(a), len(b)) == (750, 250)
    assert [len(chunk) for _, chunk in a.chunks] == [50, 400, 300]
    assert [epoch for epoch, _ in a.chunks] == [2, 3, 4]
    assert "a749" not in a and "a750" in a and "a1499" in a
    assert "b249" not in b and "b250" in b and "b499" in b
    assert worker.metrics.ids_dropped._value.get() - before == 1_000

    worker._bound_unstored_ids()                    # within the bound: nothing more goes
    assert worker.metrics.ids_dropped._value.get() - before == 1_000


def test_stored_chunks_go_and_those_handed_over_meanwhile_stay():
    ids = _ids("e", 30, 10)
    taken = list(ids.chunks)                        # a commit takes them to the store …
    ids.add(4, {"late1": 1, "late2": 2})            # … and a write-back hands over more meanwhile
    ids.add(5, {})                                  # (nothing accepted: no chunk)
    ids.stored(taken)
    assert len(ids) == 2 and [epoch for epoch, _ in ids.chunks] == [4]
    assert "late2" in ids and "e0" not in ids
