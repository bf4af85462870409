"""While the stored alerts cannot be read the rules do not run, and their notes wait in
the pipelines: kept up to `NOTES_WAITING` a partition, the newest, the rest counted as
dropped (`streams.worker._bound_waiting_notes`)."""

from cspulse.core import Params, Pipeline
from streams import worker

P = 5


def test_the_oldest_notes_beyond_the_bound_are_dropped_and_counted(monkeypatch):
    pl = Pipeline(Params())
    pl.collect_notes()
    monkeypatch.setitem(worker.pipelines, P, pl)
    dropped_before = worker.metrics.notes_dropped._value.get()

    pl.ledger.notes.extend({"kind": "response", "ts": i} for i in range(worker.NOTES_WAITING + 2_500))
    worker._bound_waiting_notes([P])
    # 20,000 + 2,500 notes: the 2,500 oldest go, the newest 20,000 wait, in their order
    assert len(pl.ledger.notes) == worker.NOTES_WAITING
    assert pl.ledger.notes[0]["ts"] == 2_500 and pl.ledger.notes[-1]["ts"] == worker.NOTES_WAITING + 2_499
    assert worker.metrics.notes_dropped._value.get() - dropped_before == 2_500

    worker._bound_waiting_notes([P])                # within the bound: nothing more goes
    assert len(pl.ledger.notes) == worker.NOTES_WAITING
    assert worker.metrics.notes_dropped._value.get() - dropped_before == 2_500
