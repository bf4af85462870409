"""The default rules of SPEC §4, each at its boundary and just short of it, and the
alert lifecycle (fire once per key, repeat, resolve).  Times are Shanghai local."""

import pytest

from cspulse.core import Params, Pipeline
from cspulse.core.params import US
from eventkit import agent, at, cust, ev
from rules.alerts import AlertBook
from rules.engine import RuleEngine
from rules.load import load_rules
from rules.runner import AlertRunner

RULES = load_rules()


def alerts(*lines, until=None):
    """Run the lines through a pipeline with the default rules; {rule: [Alert]} as of `until`."""
    params = Params(wait_checks_s=RULES.wait_checks_s)
    pipeline = Pipeline(params)
    runner = AlertRunner(pipeline, RuleEngine(RULES, params))
    for line in lines:
        pipeline.feed_line(line)
        runner.step()
    runner.finish(at(until) if until else None)
    out = {}
    for a in runner.engine.alerts.alerts.values():
        out.setdefault(a.rule, []).append(a)
    return out


# -- slow_response: one response longer than 100 s -------------------------------

def test_slow_response_fires_above_100_s_not_at_100_s():
    fired = alerts(cust("2026-11-03T10:00:00", c="c1"), agent("2026-11-03T10:01:40", c="c1"),     # 100 s
                   cust("2026-11-03T11:00:00", c="c2"), agent("2026-11-03T11:01:41", c="c2"))     # 101 s
    assert [a.subject for a in fired["slow_response"]] == ["v-c2"]
    a = fired["slow_response"][0]
    assert (a.agent_id, a.severity, a.fired_at) == ("a1", "warning", at("2026-11-03T11:01:41"))
    assert a.message == "a1 took 101 s to answer customer c2 (v-c2)"


# -- customer_waiting: 180 s of service hours with no human reply -----------------

def test_customer_waiting_fires_at_180_s_with_no_further_event():
    line = cust("2026-11-03T10:00:00")
    assert "customer_waiting" not in alerts(line, until="2026-11-03T10:02:59")
    fired = alerts(line, until="2026-11-03T10:03:00")["customer_waiting"]
    assert [(a.state, a.fired_at) for a in fired] == [("firing", at("2026-11-03T10:03:00"))]
    assert fired[0].message == "customer c1 has waited 180 s for a reply (v-c1)"


def test_customer_waiting_fires_from_stream_time_when_other_customers_move_it():
    # c1 never hears again; c2's chat 30 min later moves stream time past 10:03 + lateness
    fired = alerts(cust("2026-11-03T10:00:00", c="c1"),
                   cust("2026-11-03T10:30:00", c="c2"), agent("2026-11-03T10:30:20", c="c2"),
                   until="2026-11-03T10:30:20")
    assert [(a.subject, a.fired_at) for a in fired["customer_waiting"]] == [("v-c1", at("2026-11-03T10:03:00"))]


def test_customer_waiting_counts_service_hours_only_and_resolves_at_the_reply():
    # opened 07:59, service opens 08:00: 180 s of service hours pass at 08:03:00, not 08:02:00
    assert "customer_waiting" not in alerts(cust("2026-11-03T07:59:00"), until="2026-11-03T08:02:59")
    fired = alerts(cust("2026-11-03T07:59:00"), agent("2026-11-03T08:05:00"), until="2026-11-03T08:10:00")
    a, = fired["customer_waiting"]
    assert (a.fired_at, a.state, a.resolved_at) == (at("2026-11-03T08:03:00"), "resolved", at("2026-11-03T08:05:00"))


def test_customer_waiting_resolves_when_the_wait_is_counted_unanswered_and_a_late_reply_changes_nothing():
    # opened 10:00, effective start 10:00; unanswered_after_s = 3600: counted (and the
    # alert resolved) 1 µs past 11:00:00, when a reply would no longer be in time
    fired = alerts(cust("2026-11-03T10:00:00"), until="2026-11-03T11:00:00")["customer_waiting"]
    assert [a.state for a in fired] == ["firing"]
    fired = alerts(cust("2026-11-03T10:00:00"), until="2026-11-03T11:00:01")["customer_waiting"]
    assert [(a.state, a.fired_at, a.resolved_at) for a in fired] == \
        [("resolved", at("2026-11-03T10:03:00"), at("2026-11-03T11:00:00") + 1)]
    # answered at 11:30: a response (slow_response: 5,400 s) but no second customer_waiting
    fired = alerts(cust("2026-11-03T10:00:00"), agent("2026-11-03T11:30:00"), until="2026-11-03T12:00:00")
    assert [(a.state, a.resolved_at) for a in fired["customer_waiting"]] == [("resolved", at("2026-11-03T11:00:00") + 1)]
    assert fired["slow_response"][0].message == "a1 took 5400 s to answer customer c1 (v-c1)"


def test_a_wait_rule_after_as_long_as_the_unanswered_limit_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^a wait rule's 'after' \(3600 s\) must be shorter than unanswered_after_s"):
        Params(wait_checks_s=(180.0, 3600.0))


def test_a_reply_within_180_s_fires_nothing():
    assert "customer_waiting" not in alerts(cust("2026-11-03T10:00:00"), agent("2026-11-03T10:02:59"),
                                            until="2026-11-03T12:00:00")


# -- response_time_degraded: mean over 30 min > 60 s with >= 5 responses ----------

def _responses(seconds, start_minute=0):
    lines = []
    for i, s in enumerate(seconds):
        c = f"c{i}"
        m = start_minute + i
        lines += [cust(f"2026-11-03T10:{m:02d}:00", c=c), agent(f"2026-11-03T10:{m:02d}:{s:02d}", c=c)]
    return lines


def test_response_time_degraded_fires_above_60_s_mean_over_five_responses():
    # 61+61+61+61+61 = 305 s / 5 = 61 s > 60, five responses within 30 min
    fired = alerts(*_responses([1, 1, 1, 1, 1]), until="2026-11-03T10:10:00")
    assert "response_time_degraded" not in fired        # (1 s each: far below)
    lines = []
    for i in range(5):
        lines += [cust(f"2026-11-03T10:{i * 2:02d}:00", c=f"c{i}"), agent(f"2026-11-03T10:{i * 2 + 1:02d}:01", c=f"c{i}")]
    a, = alerts(*lines, until="2026-11-03T10:10:00")["response_time_degraded"]
    assert a.agent_id == "a1" and a.message == "a1: average response 61 s over 5 responses in the last 30 min"


def test_response_time_degraded_not_at_60_s_mean_nor_with_four_responses():
    at_60 = []
    for i in range(5):          # 60 s each: mean 60, not > 60
        at_60 += [cust(f"2026-11-03T10:{i * 2:02d}:00", c=f"c{i}"), agent(f"2026-11-03T10:{i * 2 + 1:02d}:00", c=f"c{i}")]
    assert "response_time_degraded" not in alerts(*at_60, until="2026-11-03T10:10:00")
    four = []
    for i in range(4):          # 90 s each but only 4 responses
        four += [cust(f"2026-11-03T10:{i * 2:02d}:00", c=f"c{i}"), agent(f"2026-11-03T10:{i * 2 + 1:02d}:30", c=f"c{i}")]
    assert "response_time_degraded" not in alerts(*four, until="2026-11-03T10:10:00")


def test_response_time_degraded_resolves_when_fast_replies_bring_the_mean_down():
    lines = []
    for i in range(5):          # five at 61 s: fires
        lines += [cust(f"2026-11-03T10:{i * 2:02d}:00", c=f"c{i}"), agent(f"2026-11-03T10:{i * 2 + 1:02d}:01", c=f"c{i}")]
    for i in range(5, 10):      # five at 1 s: (5*61 + 5*1) / 10 = 31 s
        lines += [cust(f"2026-11-03T10:{i * 2:02d}:00", c=f"c{i}"), agent(f"2026-11-03T10:{i * 2:02d}:01", c=f"c{i}")]
    # a later chat moves stream time on, so the responses are applied one by one (the
    # mean is 61 s after the fifth, then falls); the last lateness window is looked at once
    lines += [cust("2026-11-03T10:45:00", c="c99")]
    a, = alerts(*lines, until="2026-11-03T10:45:00")["response_time_degraded"]
    assert (a.fired_at, a.state) == (at("2026-11-03T10:09:01"), "resolved")


# -- complaint_received, abnormal_order ---------------------------------------------

def test_complaint_fires_when_credited_to_an_agent_only():
    fired = alerts(cust("2026-11-03T10:00:00", c="c1"), agent("2026-11-03T10:00:30", c="c1"),
                   ev("complaint", "2026-11-03T11:00:00", customer_id="c1"),      # credited to a1 (last reply)
                   ev("complaint", "2026-11-03T11:00:00", customer_id="c9"))      # nobody to credit
    a, = fired["complaint_received"]
    assert (a.agent_id, a.severity, a.labels["customer_id"]) == ("a1", "critical", "c1")


def test_abnormal_order_fires_for_a_credited_flagged_order_only():
    fired = alerts(ev("order_created", "2026-11-03T10:00:00", order_id="o1", customer_id="c1", amount=88.5,
                      agent_id="a2"),
                   ev("order_flagged", "2026-11-03T10:05:00", order_id="o1", customer_id="c1", reason="fake address"),
                   ev("order_created", "2026-11-03T10:00:00", order_id="o2", customer_id="c2", amount=10),  # silent
                   ev("order_flagged", "2026-11-03T10:05:00", order_id="o2", customer_id="c2", reason="x"))
    a, = fired["abnormal_order"]
    assert a.subject == "o1"
    assert a.message == "order o1 (88.50 CNY) credited to a2 was flagged: fake address"


# -- refund_spike: refunds today >= 3 and refund ratio today > 20% ------------------

def _paid_orders(n, refunded):
    lines = []
    for i in range(n):
        o, c = f"o{i}", f"c{i}"
        lines += [ev("order_created", "2026-11-03T10:00:00", order_id=o, customer_id=c, amount=100, agent_id="a1"),
                  ev("order_paid", "2026-11-03T10:01:00", order_id=o, customer_id=c, amount=100)]
        if i < refunded:
            lines.append(ev("order_refunded", "2026-11-03T11:00:00", order_id=o, customer_id=c, amount=100))
    return lines


def test_refund_spike_fires_at_three_refunds_above_20_percent():
    # 3 refunded / 10 paid = 30% > 20%, refunds 3 >= 3
    a, = alerts(*_paid_orders(10, 3), until="2026-11-03T12:00:00")["refund_spike"]
    assert a.message == "a1: 3 refunded orders today, refund ratio 30%"


def test_refund_spike_not_at_two_refunds_nor_at_exactly_20_percent():
    assert "refund_spike" not in alerts(*_paid_orders(5, 2), until="2026-11-03T12:00:00")    # 2/5 = 40%, only 2
    assert "refund_spike" not in alerts(*_paid_orders(15, 3), until="2026-11-03T12:00:00")   # 3/15 = 20%, not > 20%


# -- lifecycle ------------------------------------------------------------------------

def test_an_alert_fires_once_per_key_repeats_at_most_every_30_min_and_resolves():
    rule = next(r for r in RULES.rules if r.name == "response_time_degraded")
    book = AlertBook()
    t0 = at("2026-11-03T10:00:00")
    values = {"agent_id": "a1", "avg_response_time_s": 70.0, "responses": 6}
    book.matched(rule, values, t0)
    book.matched(rule, values, t0 + 29 * 60 * US)           # holds; 29 min < 30 min: not re-sent
    book.matched(rule, values, t0 + 30 * 60 * US)           # 30 min since it was sent: re-sent once
    book.matched(rule, values, t0 + 31 * 60 * US)
    book.missed(rule, values, t0 + 40 * 60 * US)            # the condition cleared
    book.missed(rule, values, t0 + 41 * 60 * US)            # already resolved: nothing
    assert [d.action for d in book.drain()] == ["firing", "repeat", "resolved"]
    a, = book.alerts.values()
    assert (a.key, a.sends, a.resolved_at) == ("response_time_degraded|a1|", 2, t0 + 40 * 60 * US)
    book.matched(rule, values, t0 + 50 * 60 * US)           # it comes back: fires again, same key
    assert [d.action for d in book.drain()] == ["firing"] and len(book.alerts) == 1


def test_single_event_alerts_resolve_after_their_resolve_after():
    rule = next(r for r in RULES.rules if r.name == "slow_response")       # resolve_after: 1h
    book = AlertBook()
    t0 = at("2026-11-03T10:00:00")
    book.matched(rule, {"agent_id": "a1", "conversation_id": "v1", "customer_id": "c1", "response_s": 120.0}, t0)
    book.tick(t0 + 3600 * US - 1)
    assert book.alerts["slow_response|a1|v1"].state == "firing"
    book.tick(t0 + 3600 * US)
    assert book.alerts["slow_response|a1|v1"].state == "resolved"


def test_a_match_within_resolve_after_postpones_the_resolve_and_a_refired_alert_is_timed_again():
    rule = next(r for r in RULES.rules if r.name == "slow_response")       # resolve_after: 1h
    book = AlertBook()
    t0, hour = at("2026-11-03T10:00:00"), 3600 * US
    v1 = {"agent_id": "a1", "conversation_id": "v1", "customer_id": "c1", "response_s": 120.0}
    v2 = dict(v1, conversation_id="v2")
    book.matched(rule, v1, t0)
    book.matched(rule, v2, t0 + 10 * 60 * US)
    book.matched(rule, v1, t0 + 30 * 60 * US)               # v1 holds again: resolves at 10:30 + 1h
    book.tick(t0 + hour)                                     # 11:00: v1's first due time, now stale
    assert book.alerts["slow_response|a1|v1"].state == "firing"
    book.tick(t0 + hour + 10 * 60 * US)                      # 11:10: v2, 1h after its only match
    assert book.alerts["slow_response|a1|v2"].state == "resolved"
    assert book.alerts["slow_response|a1|v2"].resolved_at == t0 + hour + 10 * 60 * US
    book.tick(t0 + hour + 30 * 60 * US - 1)
    assert book.alerts["slow_response|a1|v1"].state == "firing"
    book.tick(t0 + hour + 30 * 60 * US)                      # 11:30 = 10:30 + 1h
    assert book.alerts["slow_response|a1|v1"].state == "resolved"
    book.matched(rule, v1, t0 + 2 * hour)                    # 12:00: fires again, timed again
    assert book.firing_counts({"slow_response": "warning"}) == {("slow_response", "warning"): 1}
    book.tick(t0 + 3 * hour)
    # (v1 matched again 30 min after it was sent: the repeat_interval, so re-sent once)
    assert [d.action for d in book.drain()] == ["firing", "firing", "repeat", "resolved", "resolved", "firing", "resolved"]
    assert book.firing_counts({"slow_response": "warning"}) == {}


def test_firing_counts_by_rule_and_severity():
    book = AlertBook()
    slow = next(r for r in RULES.rules if r.name == "slow_response")
    complaint = next(r for r in RULES.rules if r.name == "complaint_received")
    t0 = at("2026-11-03T10:00:00")
    for i in range(3):
        book.matched(slow, {"agent_id": "a1", "conversation_id": f"v{i}", "response_s": 120.0}, t0)
    book.matched(complaint, {"agent_id": "a1", "conversation_id": "v9", "event_id": "e9"}, t0)
    severities = {r.name: r.severity for r in RULES.rules}
    assert book.firing_counts(severities) == {("slow_response", slow.severity): 3,
                                              ("complaint_received", complaint.severity): 1}
    # a rule no longer in the rule file (an alert stored by an older one) counts alert by alert
    assert book.firing_counts({"slow_response": slow.severity}) == {
        ("slow_response", slow.severity): 3, ("complaint_received", complaint.severity): 1}


def test_the_same_events_twice_give_the_same_alerts():
    lines = [cust("2026-11-03T10:00:00", c="c1"), agent("2026-11-03T10:02:00", c="c1"),
             ev("complaint", "2026-11-03T10:30:00", customer_id="c1")]
    once = alerts(*lines)
    twice = alerts(*lines, *lines)                          # every event delivered twice
    assert {r: [x.as_json() for x in v] for r, v in once.items()} == {r: [x.as_json() for x in v] for r, v in twice.items()}
    assert set(once) == {"slow_response", "complaint_received"}


@pytest.mark.parametrize("rule", [r.name for r in RULES.rules])
def test_every_default_rule_is_in_the_file_with_a_severity(rule):
    assert rule in {"slow_response", "customer_waiting", "response_time_degraded", "complaint_received",
                    "abnormal_order", "refund_spike", "improvement_plan_overdue"}


def test_improvement_plan_overdue_fires_for_an_overdue_plan_only():
    # The month-end close (issue 5) tracks plans and writes a "plan" note when one's state
    # changes; the rule fires on state "overdue" and resolves when the plan comes in.
    engine = RuleEngine(RULES)
    due = at("2026-12-09T00:30:00")
    plan = {"kind": "plan", "agent_id": "a3", "period": "2026-11", "due": "2026-12-09T00:30:00+08:00"}
    engine.observe({**plan, "ts": due - 1, "state": "required"})
    assert engine.alerts.alerts == {}
    engine.observe({**plan, "ts": due, "state": "overdue"})
    a, = engine.alerts.alerts.values()
    assert (a.key, a.severity, a.state) == ("improvement_plan_overdue|a3|2026-11", "warning", "firing")
    assert a.message == "a3's improvement plan for 2026-11 was due 2026-12-09T00:30:00+08:00 and is not submitted"
    engine.observe({**plan, "ts": due + 60 * US, "state": "submitted"})
    assert a.state == "resolved"


def test_two_rules_watching_the_same_kind_both_fire():
    # durable-rules hands a posted event to the first rule it matches only; notes are
    # facts (asserted, then retracted), which every matching rule sees.
    from rules.load import parse_rules
    both = parse_rules({"rules": [
        {"name": "slow", "watch": "response", "when": {"response_s": {">": 100}}, "severity": "warning",
         "message": "slow {response_s:.0f}"},
        {"name": "very_slow", "watch": "response", "when": {"response_s": {">": 150}}, "severity": "critical",
         "message": "very slow {response_s:.0f}"}]}, "two.yaml")
    engine = RuleEngine(both)
    note = {"kind": "response", "agent_id": "a1", "customer_id": "c1", "conversation_id": "v1", "first": True}
    engine.observe({**note, "ts": at("2026-11-03T10:00:00"), "response_s": 120.0})
    engine.observe({**note, "conversation_id": "v2", "ts": at("2026-11-03T10:10:00"), "response_s": 200.0})
    assert sorted(a.key for a in engine.alerts.alerts.values()) == ["slow|a1|v1", "slow|a1|v2", "very_slow|a1|v2"]


def test_more_than_a_thousand_agents_fit_in_the_engine():
    # durable-rules raises MemoryError at its 1,024th session: facts share one session
    from cspulse.core import KpiBook
    engine = RuleEngine(RULES)
    book = KpiBook()
    now = at("2026-11-03T10:00:00")
    day = "2026-11-03"
    for i in range(1500):
        book.add_all([(f"a{i}", day, "paid_orders", 10), (f"a{i}", day, "refunded_orders", 3 if i % 2 else 1)])
    engine.agents_changed({f"a{i}" for i in range(1500)}, now, book)
    for i in range(1500):
        engine.observe({"kind": "response", "ts": now, "agent_id": f"a{i}", "customer_id": f"c{i}",
                        "conversation_id": f"v{i}", "response_s": 120.0, "first": True})
    fired = engine.alerts.alerts.values()
    assert sum(a.rule == "refund_spike" for a in fired) == 750      # 3 of 10 refunded: 30% > 20%
    assert sum(a.rule == "slow_response" for a in fired) == 1500


def test_an_alert_stored_as_its_record_comes_back_equal_and_apart_from_the_original():
    """The store keeps `as_record()` as JSON and reads it back with `Alert(**record)`."""
    import json as _json

    from rules.alerts import Alert

    a = Alert(key="customer_waiting||c1", rule="customer_waiting", agent_id=None, subject="c1", severity="warning",
              message="c1 waits", state="resolved", fired_at=1_793_678_560_000_000, last_sent_at=5, last_match_at=6,
              resolved_at=1_793_678_600_000_000, sends=2, labels={"team": "day"})
    record = a.as_record()
    back = Alert(**_json.loads(_json.dumps(record)))
    assert back == a
    record["labels"]["team"] = "night"          # a copy: the alert's own labels unchanged
    assert a.labels == {"team": "day"}


def test_the_worker_forgets_a_resolved_alert_once_notes_are_two_days_past_its_last_match():
    """The worker's alert book keeps a resolved alert (to tell a note seen again from a new
    one) until the newest note is `forget_resolved_after` past its last match; not while its
    delivery still waits in the outbox (the store must see it); a dry run keeps every alert."""
    day = 86400 * US
    due = at("2026-12-09T00:30:00")
    plan = {"kind": "plan", "agent_id": "a3", "period": "2026-11", "due": "2026-12-09T00:30:00+08:00"}
    fast = {"kind": "response", "agent_id": "a1", "customer_id": "c1", "conversation_id": "v1",
            "response_s": 10.0, "first": True}           # fires nothing, moves the newest note on
    key = "improvement_plan_overdue|a3|2026-11"

    def resolved_plan(engine, plan):
        engine.observe({**plan, "ts": due, "state": "overdue"})             # fires: last match at `due`
        engine.observe({**plan, "ts": due + 60 * US, "state": "submitted"})  # resolved

    worker, dry = RuleEngine(RULES), RuleEngine(RULES)
    worker.alerts.forget_resolved_after = 2 * day
    for engine in (worker, dry):
        resolved_plan(engine, plan)
        engine.observe({**fast, "ts": due + 2 * day + US})      # cutoff: due + 1 µs, past the last match
        engine.tick(due + 2 * day + US)
    assert worker.alerts.alerts[key].state == "resolved"        # its deliveries not drained yet: kept
    worker.alerts.drain()
    worker.tick(due + 2 * day + US)
    assert key not in worker.alerts.alerts and dry.alerts.alerts[key].state == "resolved"

    later = RuleEngine(RULES)
    later.alerts.forget_resolved_after = 2 * day
    resolved_plan(later, plan)
    later.alerts.drain()
    later.observe({**fast, "ts": due + 2 * day})               # cutoff exactly at the last match: kept
    later.tick(due + 2 * day)
    assert later.alerts.alerts[key].state == "resolved"
    # fired again after being forgotten: a new alert (news, not a repeat)
    later.observe({**fast, "ts": due + 3 * day})
    later.tick(due + 3 * day)
    assert key not in later.alerts.alerts
    later.observe({**plan, "ts": due + 3 * day, "state": "overdue"})
    assert later.alerts.alerts[key].state == "firing" and later.alerts.alerts[key].fired_at == due + 3 * day
