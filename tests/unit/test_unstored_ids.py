"""While the store cannot be written, the worker's applied ids wait for it, at most
`IDS_UNSTORED_MAX`: beyond it the oldest of each partition go, counted
(`streams.worker._bound_unstored_ids`)."""

from streams import worker


def test_beyond_the_bound_each_partition_keeps_its_share_of_the_newest_ids(monkeypatch):
    monkeypatch.setattr(worker, "IDS_UNSTORED_MAX", 1_000)
    monkeypatch.setattr(worker, "_unstored_ids", {1: {f"a{i}": (i, 1) for i in range(1_500)},
                                                  2: {f"b{i}": (i, 1) for i in range(500)}})
    before = worker.metrics.ids_dropped._value.get()
    worker._bound_unstored_ids()
    # 2,000 ids for a bound of 1,000: each partition keeps half, its newest
    a, b = worker._unstored_ids[1], worker._unstored_ids[2]
    assert (len(a), len(b)) == (750, 250)
    assert next(iter(a)) == "a750" and next(iter(b)) == "b250" and "a1499" in a and "b499" in b
    assert worker.metrics.ids_dropped._value.get() - before == 1_000

    worker._bound_unstored_ids()                    # within the bound: nothing more goes
    assert worker.metrics.ids_dropped._value.get() - before == 1_000
