"""The month-end close through the store: reviews arrive as events (replay), the
hand-worked month of tests/monthkit.py is the month's KPIs, and the close is kept
as revisions: idempotent, deaf to late events (adjustments), reopened on demand."""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session

from cspulse import embedded
from cspulse.core import Params
from cspulse.embedded import Source
from cspulse.monthend import service
from cspulse.monthend.report import payroll, report_data
from cspulse.monthend.scoring import AgentMonth
from eventkit import at, ev
from monthkit import BASE, month
from rules.load import load_rules
from rules.month_end import load_month_end, load_scorecard
from store import repo

ZONE = ZoneInfo("Asia/Shanghai")
CARD, RULES = load_scorecard(), load_month_end()


@pytest.fixture
def engine(store_url):
    return repo.connect(store_url)       # SQLite, then PostgreSQL


def replay(engine, *lines, rules=None):
    embedded.replay([Source("test", None, iter(l.encode() for l in lines))], engine=engine, params=Params(),
                    rules=rules)


def store_month(engine, period, agents):
    """The month's reviews as events, a day after it ends; its KPIs as the KPI store holds them."""
    y, m = int(period[:4]), int(period[5:])
    after = f"{y + m // 12}-{m % 12 + 1:02d}-01T20:00:00"
    lines = []
    for a in agents:
        if a.self_review is not None:
            lines.append(ev("self_review", after, agent_id=a.agent_id, period=period, score=a.self_review))
        if a.manager_review is not None:
            lines.append(ev("manager_review", after, agent_id=a.agent_id, period=period, score=a.manager_review,
                            reviewer="manager-1"))
    replay(engine, *lines)
    with Session(engine) as s:
        repo.write_kpis({(a.agent_id, period): a.kpis for a in agents}, session=s)
        s.commit()


def close(engine, period, **kw):
    kw.setdefault("issued_at", datetime(2026, 12, 2, 0, 30, tzinfo=ZONE))
    return service.close_month(engine, period, zone=ZONE, card=CARD, rules=RULES, now=datetime.now(ZONE), **kw)


def test_close_refuses_missing_reviews_then_closes_the_hand_worked_month(engine):
    store_month(engine, "2026-11", month())
    with pytest.raises(service.MissingReviews, match=r"1 ranked agent\(s\) lack a review: hal \(manager_review\)"):
        close(engine, "2026-11")
    with Session(engine) as s:
        assert repo.current_close("2026-11", session=s) is None          # refusing stores nothing
    closed = close(engine, "2026-11", allow_missing=True)
    agents = closed.result["agents"]
    # totals of tests/monthkit.py: ann/bob 78.21, cat 75.07, hal 68.01 (no manager review), dan 67.25, eve/fay 62.01;
    # gus, not ranked: 40.005 + 0.3 × 100 + 0.14 × 100 = 84.005 -> 84.01
    assert {a: (x["rank"], x["total"]) for a, x in agents.items()} == {
        "ann": (1, 78.21), "bob": (1, 78.21), "cat": (3, 75.07), "hal": (4, 68.01), "dan": (5, 67.25),
        "eve": (6, 62.01), "fay": (6, 62.01), "gus": (None, 84.01)}
    assert agents["hal"]["missing_reviews"] == ["manager_review"]
    assert closed.revision == 1 and not closed.already
    data = report_data(engine, "2026-11", ZONE, at("2026-12-03T00:00:00"))
    # payroll: +100 to each of the tied first, −100 to each of the tied last: net 0 for the shop
    money = {r["agent_id"]: r["net"] for r in payroll(data) if r["net"]}
    assert money == {"ann": 100, "bob": 100, "eve": -100, "fay": -100}
    assert [(p["agent_id"], p["state"], p["due"]) for p in data["plans"]] == [
        ("eve", "required", "2026-12-09T00:30:00+08:00"), ("fay", "required", "2026-12-09T00:30:00+08:00")]


def test_closing_twice_changes_nothing(engine):
    store_month(engine, "2026-11", month(hal=AgentMonth("hal", BASE, 60, 70)))
    first = close(engine, "2026-11")
    again = close(engine, "2026-11", issued_at=datetime(2027, 1, 1, tzinfo=ZONE))
    assert again.already and again.revision == 1 and again.result == first.result
    with Session(engine) as s:
        assert len(repo.closes("2026-11", session=s)) == 1
        assert len(repo.read_consequences("2026-11", session=s)) == 6


def test_a_late_event_is_an_adjustment_and_reopen_makes_revision_2_with_the_difference(engine):
    store_month(engine, "2026-11", month())
    first = close(engine, "2026-11", allow_missing=True)
    # hal's manager review comes in after the close: 40.005 + 18 + 0.14 × 95 = 71.305 -> 71.31
    replay(engine, ev("manager_review", "2026-12-03T10:00:00", agent_id="hal", period="2026-11", score=95,
                      reviewer="manager-1", event_id="late-review"))
    with Session(engine) as s:
        assert [(a.event_id, a.type, a.agent_id) for a in repo.read_adjustments("2026-11", session=s)] == [
            ("late-review", "manager_review", "hal")]
    assert close(engine, "2026-11").result == first.result                # the close is deaf to it
    second = close(engine, "2026-11", reopen=True)
    assert second.revision == 2 and second.result["agents"]["hal"]["total"] == 71.31
    assert second.changes == ["hal: total 68.01 -> 71.31"]               # still below cat's 75.07
    assert second.result["issued_at"] == first.result["issued_at"]        # the report's issue date stands
    with Session(engine) as s:
        revisions = repo.closes("2026-11", session=s)
        assert [(r.revision, r.current) for r in revisions] == [(1, False), (2, True)]
        assert json.loads(revisions[0].result) == first.result              # revision 1 is kept as it was
        ids = [c.id for c in repo.read_consequences("2026-11", session=s, state=None)]
    assert len(ids) == len(set(ids)) == 6                                   # same identities, never twice


def test_a_december_refund_of_a_november_order_is_a_november_adjustment(engine):
    store_month(engine, "2026-11", month())
    replay(engine, ev("order_created", "2026-11-20T10:00:00", order_id="o9", customer_id="c9", amount=80,
                      agent_id="zed", event_id="o9-created"),
           ev("order_paid", "2026-11-20T10:05:00", order_id="o9", customer_id="c9", amount=80, event_id="o9-paid"))
    close(engine, "2026-11", allow_missing=True)
    # 15 days after the payment (within the 21 after-sales days): it counts for November (SPEC §3.2)
    replay(engine, ev("order_refunded", "2026-12-05T10:00:00", order_id="o9", customer_id="c9", amount=80,
                      event_id="o9-refunded"))
    with Session(engine) as s:
        assert [(a.event_id, a.type, a.agent_id, a.customer_id) for a in repo.read_adjustments("2026-11", session=s)
                ] == [("o9-refunded", "order_refunded", "zed", "c9")]
        assert repo.read_adjustments("2026-12", session=s) == []     # by its own time it would be December's
    data = report_data(engine, "2026-11", ZONE, at("2026-12-06T00:00:00"))
    assert [e["event_id"] for e in data["adjustments"]["events"]] == ["o9-refunded"]
    # and the report's "at the close -> now" shows what it changed: zed's one order, paid and valid
    # at the close, is refunded in full now (0 -> 1 refunded; 1 -> 0 valid: 80 < 80 is false)
    changes = data["adjustments"]["kpi_changes"]["zed"]
    assert (changes["refunded_orders"], changes["valid_orders"]) == (
        {"at_close": 0, "now": 1}, {"at_close": 1, "now": 0})


def test_a_reopen_that_drops_a_consequence_withdraws_it(engine):
    store_month(engine, "2026-11", month())
    close(engine, "2026-11", allow_missing=True)
    # fay's self review is corrected upward: 40.005 + 0.3 × 70 + 4.9 = 65.905 -> 65.91, no longer last
    replay(engine, ev("self_review", "2026-12-03T10:00:00", agent_id="fay", period="2026-11", score=70))
    second = close(engine, "2026-11", reopen=True, allow_missing=True)
    assert "fay: - deduction 100 CNY (withdrawn)" in second.changes
    with Session(engine) as s:
        states = {c.id: c.state for c in repo.read_consequences("2026-11", session=s, state=None)}
    assert states["2026-11/fay/deduction"] == "withdrawn" and states["2026-11/eve/deduction"] == "active"


def test_third_month_last_in_a_row_recommends_reassignment_and_a_broken_streak_does_not(engine):
    # eve is last in September, October and November; fay only in October and November
    full = {"hal": AgentMonth("hal", BASE, 60, 70)}
    store_month(engine, "2026-09", month(fay=AgentMonth("fay", BASE, 80, 80), **full))
    store_month(engine, "2026-10", month(**full))
    store_month(engine, "2026-11", month(**full))
    for period in ("2026-09", "2026-10", "2026-11"):
        close(engine, period)
    with Session(engine) as s:
        rows = repo.read_consequences("2026-11", session=s)
    reassign = [c for c in rows if c.kind == "reassignment_recommendation"]
    assert [c.agent_id for c in reassign] == ["eve"]
    months = json.loads(reassign[0].evidence)["months"]
    assert [(m["period"], m["rank_from_bottom"], m["total"]) for m in months] == [
        ("2026-11", 1, 62.01), ("2026-10", 1, 62.01), ("2026-09", 1, 62.01)]


def test_an_unsubmitted_plan_past_its_due_time_fires_improvement_plan_overdue(engine):
    store_month(engine, "2026-11", month())
    close(engine, "2026-11", allow_missing=True)                          # eve and fay: plans due 12-09 00:30
    rules = load_rules()
    replay(engine, ev("qa_check", "2026-12-09T00:29:00", agent_id="ann", reviewer="s", score=90), rules=rules)
    assert [p.state for p in service.plan_states(engine, at("2026-12-09T00:29:00"))] == ["required", "required"]
    with Session(engine) as s:
        assert repo.read_alerts(session=s) == []
    replay(engine, ev("improvement_plan_submitted", "2026-12-08T18:00:00", agent_id="fay", period="2026-11",
                      text="answer within a minute"),
           ev("qa_check", "2026-12-09T00:31:00", agent_id="ann", reviewer="s", score=90), rules=rules)
    with Session(engine) as s:
        fired = repo.read_alerts(session=s)
        adjustments = repo.read_adjustments("2026-11", session=s)
    assert [(a.rule, a.agent_id, a.state, a.fired_at) for a in fired] == [
        ("improvement_plan_overdue", "eve", "firing", at("2026-12-09T00:30:00"))]
    assert adjustments == []                                              # a plan is no adjustment
    replay(engine, ev("improvement_plan_submitted", "2026-12-10T09:00:00", agent_id="eve", period="2026-11",
                      text="fewer refunds"), rules=rules)
    with Session(engine) as s:
        assert [a.state for a in repo.read_alerts(session=s)] == ["resolved"]
    assert {p.agent_id: p.state for p in service.plan_states(engine, at("2026-12-10T09:00:00"))} == {
        "eve": "submitted", "fay": "submitted"}
