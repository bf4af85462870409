from datetime import date

import pytest
from sqlmodel import Session

from cspulse import embedded
from cspulse.core import Params
from cspulse.embedded import Source
from cspulse.simulate import Simulator
from store import repo


@pytest.fixture(scope="module")
def lines():
    sim = Simulator(agents=3, days=6, seed=5, start=date(2026, 11, 1), conversations_per_agent_day=30,
                    duplicate_rate=0.01, bad_rate=0.01)
    return list(sim.lines())


def source(lines, crash_after=None):
    def gen():
        for i, line in enumerate(lines):
            if crash_after is not None and i == crash_after:
                raise KeyboardInterrupt("power cut")
            yield line
    return Source("test", None, gen())


def month(url):
    engine = repo.connect(url)
    with Session(engine) as s:
        return repo.read_kpis("2026-11", session=s)


def test_second_replay_of_the_same_events_finds_every_one_a_duplicate(lines, store_url):
    url = store_url
    engine = repo.connect(url)
    _, first, _ = embedded.replay([source(lines)], engine=engine, params=Params())
    before = month(url)
    _, second, _ = embedded.replay([source(lines)], engine=engine, params=Params())
    # six days is longer than the two-day in-memory horizon: the older ids come from the store
    assert second.applied == 0
    assert second.duplicates == first.applied + first.duplicates
    assert second.rejected == first.rejected
    assert month(url) == before


def test_a_file_read_twice_in_one_replay_counts_every_event_once(lines, tmp_path, store_url):
    """The second copy comes before any checkpoint has stored the first one's ids, and
    most of its events are older than the two-day in-memory horizon: they are found
    among the ids accepted and not yet stored (the second copy counted 3,501 of the
    3,505 events again before)."""
    once = f"sqlite:///{tmp_path / 'once.sqlite'}"
    _, first, _ = embedded.replay([source(lines)], engine=repo.connect(once), params=Params())
    _, twice, _ = embedded.replay([source(lines), source(lines)], engine=repo.connect(store_url), params=Params())
    assert twice.applied == first.applied
    # the first copy's own duplicates, then every valid line of the second copy
    assert twice.duplicates == first.duplicates + (first.applied + first.duplicates)
    assert month(store_url) == month(once)


def test_ids_of_a_worker_write_back_never_committed_are_forgotten(store_url):
    engine = repo.connect(store_url)
    with Session(engine) as s:
        repo.remember_ids({"r1": 1}, session=s)                                     # replay's: no partition
        # the worker's: (partition, epoch, event_id -> ts) a write-back; a1 stored again changes nothing
        for p, epoch, ids in [(1, 1, {"a1": 1}), (1, 2, {"a2": 2}), (1, 3, {"a3": 3, "a4": 4}), (2, 5, {"b5": 5}),
                              (1, 3, {"a1": 1}), (2, 6, {})]:
            repo.remember_ids(ids, session=s, partition=p, epoch=epoch)
        s.commit()
    with Session(engine) as s:
        assert repo.forget_ids_after(1, 2, session=s) == 2     # partition 1 committed its write-back 2: a3, a4 go
        s.commit()
    seen = repo.seen_lookup(engine)
    assert [seen(i) for i in ("r1", "a1", "a2", "a3", "a4", "b5")] == [True, True, True, False, False, True]
    seen.close()


def test_crash_mid_replay_then_replaying_everything_loses_nothing_and_counts_nothing_twice(lines, tmp_path, store_url,
                                                                                          monkeypatch):
    clean = f"sqlite:///{tmp_path / 'clean.sqlite'}"
    embedded.replay([source(lines)], engine=repo.connect(clean), params=Params())

    crashed = store_url
    engine = repo.connect(crashed)
    monkeypatch.setattr(embedded, "CHECKPOINT_EVERY", 1000)
    with pytest.raises(KeyboardInterrupt):
        embedded.replay([source(lines, crash_after=len(lines) * 2 // 3)], engine=engine, params=Params())
    embedded.replay([source(lines)], engine=engine, params=Params())
    assert month(crashed) == month(clean)


def test_rejected_inputs_are_kept_once_with_their_reason(lines, store_url):
    url = store_url
    engine = repo.connect(url)
    _, run, reasons = embedded.replay([source(lines)], engine=engine, params=Params())
    embedded.replay([source(lines)], engine=engine, params=Params())
    with Session(engine) as s:
        kept = repo.rejected(session=s, limit=10_000)
    assert run.rejected > 0
    assert len(kept) == run.rejected == sum(reasons.values())
    assert all(r.reason and r.raw and r.source.startswith("test:") for r in kept)


def test_other_kpi_settings_on_an_existing_database_are_refused(lines, store_url):
    engine = repo.connect(store_url)
    embedded.replay([source(lines[:100])], engine=engine, params=Params())
    with pytest.raises(embedded.InputError, match="CSPULSE_SLOW_RESPONSE_S 100 -> 60"):
        embedded.replay([source(lines[100:])], engine=engine, params=Params(slow_response_s=60))


def test_alerts_are_stored_once_per_key_with_their_latest_state(store_url):
    from rules.alerts import Alert

    def alert(i: int, state: str, sends: int = 1) -> Alert:
        return Alert(key=f"customer_waiting|agent-{i % 3}|conv-{i}", rule="customer_waiting", agent_id=f"agent-{i % 3}",
                     subject=f"conv-{i}", severity="critical", message=f"conv-{i} waits", state=state,
                     fired_at=1_000 + i, last_sent_at=1_000 + i, last_match_at=1_000 + i, resolved_at=None,
                     sends=sends, labels={})
    engine = repo.connect(store_url)
    with Session(engine) as s:      # 6 fire, and within the same write conv-5 is re-sent: still one row
        repo.write_alerts([alert(i, "firing") for i in range(6)] + [alert(5, "firing", sends=2)], session=s)
        s.commit()
    with Session(engine) as s:      # later: conv-0 and conv-2 resolve, conv-6 fires
        repo.write_alerts([alert(0, "resolved"), alert(2, "resolved"), alert(6, "firing")], session=s)
        s.commit()
    with Session(engine) as s:
        stored = repo.read_alerts(session=s)
        firing = repo.read_alerts(session=s, state="firing")
    assert [(a.subject, a.state, a.sends) for a in stored] == [
        ("conv-0", "resolved", 1), ("conv-1", "firing", 1), ("conv-2", "resolved", 1), ("conv-3", "firing", 1),
        ("conv-4", "firing", 1), ("conv-5", "firing", 2), ("conv-6", "firing", 1)]
    assert len(firing) == 5       # 7 keys, 2 of them resolved
