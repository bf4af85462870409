"""The month-end close of SPEC §5 on a hand-worked month of eight agents, with the
arithmetic written out.  Every agent has the same KPIs except where said, so the
ranking is decided by what each test varies."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cspulse.monthend.close import decide, last_streak, missing_reviews
from eventkit import at
from cspulse.monthend.scoring import AgentMonth, linear_score, round_money, score_month
from monthkit import BASE, month
from rules.engine import ConsequenceEngine
from rules.month_end import load_month_end, load_scorecard

CARD, RULES = load_scorecard(), load_month_end()
ZONE = ZoneInfo("Asia/Shanghai")
ISSUED = datetime(2026, 12, 2, 0, 30, tzinfo=ZONE)


def standings(agents=None):
    return {s.agent_id: s for s in score_month(agents or month(), CARD)}


def close(agents=None, history=None):
    s = score_month(agents or month(), CARD)
    return decide("2026-11", s, RULES, history or {}, ISSUED, ZONE, ConsequenceEngine(RULES).decide)


def test_linear_scores_of_spec_example_and_clamps():
    assert linear_score(45, 120, 20) == 75                 # SPEC §5: 45 s scores 75
    assert linear_score(130, 120, 20) == 0 and linear_score(10, 120, 20) == 100


def test_kpi_management_and_manager_components_as_worked_out():
    s = standings()
    assert s["ann"].kpi_score == pytest.approx(70.25)
    assert s["ann"].management_score == pytest.approx(70)
    assert s["ann"].qa_score == 80
    assert s["ann"].manager_component == pytest.approx(57.15 + 0.2 * 80)
    assert s["cat"].kpi_score == pytest.approx(73.25)
    assert {p.kpi: p.score for p in s["cat"].kpi_parts}["order_amount"] == 100


def test_a_kpi_with_no_data_is_left_out_and_the_weights_renormalised():
    dan = standings()["dan"]
    assert dan.kpi_score == pytest.approx(3825 / 70)       # 54.642857…
    # manager = 0.6 × 54.642857 + 8 + 7 + 14 = 61.785714; total = 24 + 0.7 × 61.785714 = 24 + 43.25
    assert dan.total == 67.25
    assert [p.kpi for p in dan.kpi_parts if p.score is None] == [
        "valid_order_ratio", "payment_ratio", "refund_ratio", "avg_order_value", "abnormal_order_ratio"]


def test_totals_round_half_up_to_two_decimals():
    s = standings()
    assert (s["ann"].total, s["bob"].total, s["cat"].total, s["eve"].total, s["fay"].total) == (
        78.21, 78.21, 75.07, 62.01, 62.01)
    assert round_money(62.005) == 62.01 and round_money(2.675) == 2.68   # not float's 2.67


def test_ties_share_rank_and_rank_from_bottom():
    s = standings(month(hal=AgentMonth("hal", BASE, 60, 70)))
    # hal: 40.005 + 18 + 9.8 = 67.805 -> 67.81
    assert s["hal"].total == 67.81
    got = {a: (x.rank, x.rank_from_bottom) for a, x in s.items()}
    assert got == {"ann": (1, 6), "bob": (1, 6), "cat": (3, 5), "hal": (4, 4), "dan": (5, 3),
                   "eve": (6, 1), "fay": (6, 1), "gus": (None, None)}


def test_an_agent_with_fewer_than_30_served_customers_is_listed_not_ranked():
    gus = standings()["gus"]
    assert (gus.eligible, gus.rank, gus.rank_from_bottom) == (False, None, None)
    assert gus.reason == "served 12 customers, fewer than 30: not ranked"
    # an ineligible agent's amount is not the team's max, and scores against it, clamped to 100
    s = standings(month(gus=AgentMonth("gus", {**BASE, "served_customers": 29, "order_amount": 20000.0}, 1, 1)))
    assert {p.kpi: p.score for p in s["gus"].kpi_parts}["order_amount"] == 100
    assert {p.kpi: p.score for p in s["cat"].kpi_parts}["order_amount"] == 100


def test_a_missing_review_is_listed_and_renormalised_when_allowed():
    s = standings()
    assert missing_reviews(list(s.values())) == {"hal": ["manager_review"]}
    hal = s["hal"]
    # manager = (0.6 × 70.25 + 8 + 7) / 0.8 = 57.15 / 0.8 = 71.4375; total = 18 + 0.7 × 71.4375 = 68.00625
    assert hal.manager_component == pytest.approx(71.4375)
    assert hal.total == 68.01
    no_self = standings(month(hal=AgentMonth("hal", BASE, None, 70)))["hal"]
    assert no_self.missing == ["self_review"]
    assert no_self.total == 71.15 and no_self.manager_component == pytest.approx(57.15 + 14)   # total = manager part


def test_consequences_bonus_deduction_and_plans_with_ties():
    result = close()
    got = sorted((c.agent_id, c.kind, c.amount, c.due) for c in result.consequences)
    due = "2026-12-09T00:30:00+08:00"                       # issued + 7 days
    assert got == [("ann", "bonus", 100, None), ("bob", "bonus", 100, None),
                   ("eve", "deduction", 100, None), ("eve", "improvement_plan", None, due),
                   ("fay", "deduction", 100, None), ("fay", "improvement_plan", None, due)]
    assert {c.id for c in result.consequences} >= {"2026-11/ann/bonus", "2026-11/eve/deduction"}
    assert result.notes == ["closed with reviews missing: hal: manager_review"]


def test_third_consecutive_last_place_recommends_reassignment_and_a_broken_streak_does_not():
    last = {"rank": 7, "rank_from_bottom": 1, "ranked": 7, "total": 50.0}
    second = {"rank": 6, "rank_from_bottom": 2, "ranked": 7, "total": 55.0}
    history = {"2026-10": {"eve": last, "fay": last}, "2026-09": {"eve": last, "fay": second},
               "2026-08": {"fay": last}}
    assert last_streak("eve", "2026-11", history) == 3
    assert last_streak("fay", "2026-11", history) == 2          # 2026-09 broke it
    assert last_streak("eve", "2026-11", {"2026-09": {"eve": last}}) == 1   # 2026-10 not closed
    result = close(history=history)
    reassign = [c for c in result.consequences if c.kind == "reassignment_recommendation"]
    assert [c.agent_id for c in reassign] == ["eve"]
    assert [m["period"] for m in reassign[0].evidence["months"]] == ["2026-11", "2026-10", "2026-09"]
    assert reassign[0].message == "ranked last 3 months in a row: reassignment recommended"


def test_no_consequence_with_fewer_than_three_ranked_agents():
    few = [AgentMonth("ann", BASE, 90, 80), AgentMonth("bob", BASE, 50, 50),
           AgentMonth("gus", {**BASE, "served_customers": 3}, 90, 90)]
    result = close(few)
    assert result.ranked == 2 and result.consequences == []
    assert result.notes == ["2 agents ranked, fewer than 3: no consequences"]


def test_the_json_has_every_field_the_close_promises():
    line = close().as_json()["agents"]["eve"]
    assert {"rank", "rank_from_bottom", "total", "kpi_score", "qa_score", "management_score", "manager_component",
            "self_review", "manager_review", "eligible", "reason", "consequences"} <= set(line)
    assert line["consequences"][0] == {"kind": "deduction", "amount": 100, "due": None, "id": "2026-11/eve/deduction",
                                       "message": "ranked last of 7 with 62.01: 100 CNY deducted from commission"}
    assert close().as_json()["agents"]["gus"]["rank"] is None


def test_the_worker_closes_the_previous_month_at_00_30_on_the_2nd():
    from streams.closing import due_period
    due = lambda ts: due_period(datetime.fromisoformat(ts), ZONE, 2, "00:30")  # noqa: E731
    assert due("2026-12-02T00:29:59+08:00") == "2026-10"       # November's close is not due yet
    assert due("2026-12-02T00:30:00+08:00") == "2026-11"
    assert due("2026-12-01T16:30:00+00:00") == "2026-11"       # the same instant in UTC
    assert due("2027-01-01T12:00:00+08:00") == "2026-11"
    assert due("2027-01-02T00:30:00+08:00") == "2026-12"       # across the year
    assert due_period(datetime.fromisoformat("2026-12-05T09:00:00+08:00"), ZONE, 5, "09:00") == "2026-11"


def test_a_traced_run_names_the_event_or_timer_behind_each_count():
    from cspulse.core import Pipeline
    from cspulse.monthend.report import trace_counts
    from eventkit import agent, cust, ev
    p = Pipeline()
    p.ledger.trace = []
    p.run([cust("2026-11-03T10:00:00", event_id="ask"), agent("2026-11-03T10:00:30", event_id="reply"),
           ev("order_created", "2026-11-03T10:05:00", order_id="o1", customer_id="c1", amount=50, event_id="buy"),
           cust("2026-11-03T11:00:00", c="c2", event_id="ask2"), agent("2026-11-03T11:00:10", c="c2", event_id="reply2"),
           ev("qa_check", "2026-11-03T12:00:00", agent_id="a1", reviewer="s", score=80, event_id="qa")],
          until=at("2026-11-05T00:00:00"))        # both inquiries' windows (to the end of the next day) ended
    traced = trace_counts(p, "a1", "2026-11")
    assert traced["responses"] == [("reply", 1), ("reply2", 1)]
    assert traced["served_customers"] == [("reply", 1), ("reply2", 1)]
    assert traced["orders"] == [("buy", 1)]
    assert traced["qa_checks"] == [("qa", 1)]
    # c2 ordered nothing by the end of the next day: lost, when its inquiry window's timer fired
    assert traced["lost_inquiries"] == [("inquiry timer of customer c2", 1)]
    assert trace_counts(p, "a1", "2026-12")["responses"] == []
