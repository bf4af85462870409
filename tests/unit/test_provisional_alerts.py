"""Alerts from a look-ahead (events still held for ordering): `RuleEngine.observe_ahead`.

A customer's look-ahead notes come again each time the customer changes; only
what it saw since is posted to the rules, and an alert that a later look-ahead
no longer supports (an event arrived late) is retracted unless an applied event
confirmed it.  Times are Shanghai local."""

from cspulse.core.params import US
from eventkit import at
from rules.engine import RuleEngine
from rules.load import load_rules

T0 = at("2026-11-03T10:00:00")


def complaint(s: int, conv: str = "v1") -> dict:
    return {"kind": "complaint", "ts": T0 + s * US, "agent_id": "a1", "customer_id": "c1",
            "conversation_id": conv, "category": "service", "event_id": f"e-{conv}-{s}"}


def waiting(s: int, conv: str = "v1") -> dict:
    return {"kind": "wait", "ts": T0 + s * US, "agent_id": "a1", "customer_id": "c1", "conversation_id": conv,
            "waited_s": 180.0, "open": True}


def posting(engine: RuleEngine) -> list[dict]:
    """The notes the engine posts to durable-rules from now on."""
    posted, observe = [], engine.observe

    def spy(note, provisional_for=None):
        posted.append(note)
        observe(note, provisional_for)
    engine.observe = spy
    return posted


def actions(engine: RuleEngine) -> list[tuple[str, str]]:
    return [(d.action, d.alert["key"]) for d in engine.alerts.drain()]


def test_only_what_a_look_ahead_saw_since_is_posted():
    engine = RuleEngine(load_rules())
    posted = posting(engine)
    engine.observe_ahead("c1", [complaint(0)], T0)
    engine.observe_ahead("c1", [complaint(0)], T0 + US)                     # the same: nothing new
    engine.observe_ahead("c1", [waiting(200, "v2"), complaint(0)], T0 + 2 * US)   # one more (any order)
    assert posted == [complaint(0), waiting(200, "v2")]
    assert actions(engine) == [("firing", "complaint_received|a1|v1"), ("firing", "customer_waiting|a1|v2")]


def test_a_look_ahead_that_saw_something_else_is_observed_again_and_retracts_what_it_no_longer_supports():
    engine = RuleEngine(load_rules())
    engine.observe_ahead("c1", [complaint(0), waiting(200, "v2")], T0)
    actions(engine)
    posted = posting(engine)
    # an event arrived late: the wait in v2 was answered, the look-ahead sees the complaint only
    engine.observe_ahead("c1", [complaint(0)], T0 + US)
    assert posted == [complaint(0)]                                  # not a continuation: all again
    assert actions(engine) == [("retracted", "customer_waiting|a1|v2")]
    engine.observe_ahead("c1", [], T0 + 2 * US)                      # nothing held any more
    assert actions(engine) == [("retracted", "complaint_received|a1|v1")]
    assert engine.alerts.alerts == {}


def test_an_alert_an_applied_event_confirmed_is_not_retracted():
    engine = RuleEngine(load_rules())
    engine.observe_ahead("c1", [complaint(0)], T0)
    engine.observe(complaint(0))                                     # applied: final
    engine.observe_ahead("c1", [], T0 + US)
    assert actions(engine) == [("firing", "complaint_received|a1|v1")]
    assert engine.alerts.alerts["complaint_received|a1|v1"].state == "firing"


def test_a_stale_note_seen_again_does_not_resolve_a_newer_alert():
    # customer_waiting resolves when a wait note says the wait closed; the look-ahead of
    # a later message must not post the old closing note again over the wait opened since
    engine = RuleEngine(load_rules())
    closed = dict(waiting(200), waited_s=200.0, open=False)
    engine.observe_ahead("c1", [waiting(180), closed], T0)
    engine.observe(waiting(900))                       # a newer wait in v1, applied: fires again
    engine.observe_ahead("c1", [waiting(180), closed, complaint(950, "v3")], T0 + 950 * US)
    assert engine.alerts.alerts["customer_waiting|a1|v1"].state == "firing"
