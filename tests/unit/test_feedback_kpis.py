from eventkit import agent, ev, kpis, run

DAY = "2026-11-03"


def test_complaint_ratio_is_complaints_per_served_customer():
    p = run(
        *[agent("2026-11-03T10:00:00", c=f"c{i}") for i in range(4)],          # 4 served customers
        ev("complaint", "2026-11-03T11:00:00", customer_id="c0"),             # by last reply -> a1
        ev("complaint", "2026-11-03T11:00:00", customer_id="c9", agent_id="a1"),  # explicit
        ev("complaint", "2026-11-03T11:00:00", customer_id="c8"),             # nobody: shop only
    )
    k = kpis(p, "a1", DAY)
    assert k["complaints"] == 2
    assert k["complaint_ratio"] == 2 / 4
    assert kpis(p, None, DAY)["complaints"] == 3


def test_complaint_after_the_look_back_is_not_credited_to_the_agent():
    p = run(agent("2026-11-03T10:00:00"), ev("complaint", "2026-11-04T10:00:01", customer_id="c1"))
    assert kpis(p, "a1", "2026-11-04")["complaints"] == 0
    assert kpis(p, None, "2026-11-04")["complaints"] == 1


def test_csat_and_qa_score_are_means():
    p = run(
        ev("rating", "2026-11-03T10:00:00", customer_id="c1", agent_id="a1", score=5),
        ev("rating", "2026-11-03T10:00:00", customer_id="c2", agent_id="a1", score=4),
        ev("rating", "2026-11-03T10:00:00", customer_id="c3", agent_id="a1", score=2),
        ev("qa_check", "2026-11-03T10:00:00", agent_id="a1", reviewer="m1", score=90),
        ev("qa_check", "2026-11-03T10:00:00", agent_id="a1", reviewer="m1", score=75.5),
    )
    k = kpis(p, "a1", DAY)
    assert k["csat"] == (5 + 4 + 2) / 3
    assert k["qa_score"] == (90 + 75.5) / 2     # 82.75


def test_report_timeliness_truthfulness_and_quality_by_month_of_due():
    p = run(
        ev("report_submitted", "2026-11-07T17:00:00", agent_id="a1", report_id="r1", due="2026-11-07T18:00:00+08:00"),
        ev("report_submitted", "2026-11-07T18:00:00", agent_id="a1", report_id="r2", due="2026-11-07T18:00:00+08:00"),
        ev("report_submitted", "2026-12-01T09:00:00", agent_id="a1", report_id="r3", due="2026-11-30T18:00:00+08:00"),
        ev("report_audited", "2026-12-02T10:00:00", agent_id="a1", report_id="r1", truthful=True, quality=80),
        ev("report_audited", "2026-12-02T10:00:00", agent_id="a1", report_id="r2", truthful=False, quality=60),
        ev("report_audited", "2026-12-02T10:00:00", agent_id="a1", report_id="r3", truthful=True, quality=91),
    )
    k = kpis(p, "a1", "2026-11")
    assert k["report_timeliness"] == 2 / 3                 # r1 early, r2 exactly at due, r3 late
    assert k["report_truthfulness"] == 2 / 3
    assert k["report_quality"] == (80 + 60 + 91) / 3       # 77.0
    assert kpis(p, "a1", "2026-12")["report_timeliness"] is None


def test_reaudit_replaces_the_earlier_verdict():
    p = run(
        ev("report_submitted", "2026-11-07T17:00:00", agent_id="a1", report_id="r1", due="2026-11-07T18:00:00+08:00"),
        ev("report_audited", "2026-11-08T10:00:00", agent_id="a1", report_id="r1", truthful=False, quality=40),
        ev("report_audited", "2026-11-09T10:00:00", agent_id="a1", report_id="r1", truthful=True, quality=70),
    )
    k = kpis(p, "a1", "2026-11")
    assert (k["report_truthfulness"], k["report_quality"]) == (1 / 1, 70.0)


def test_goals_show_target_and_progress():
    from cspulse.core import goal_progress
    p = run(
        ev("goal_set", "2026-11-01T09:00:00", agent_id="a1", period="2026-11", kpi="avg_response_time_s",
           target=30, reviewer="m1"),
        ev("goal_set", "2026-11-01T09:00:00", agent_id="a1", period="2026-11", kpi="csat", target=4, reviewer="m1"),
        ev("goal_set", "2026-11-02T09:00:00", agent_id="a1", period="2026-11", kpi="csat", target=4.5,
           reviewer="m1"),                                                    # the later goal stands
    )
    assert p.desk.goals("2026-11") == {"a1": {"avg_response_time_s": 30, "csat": 4.5}}
    assert goal_progress("avg_response_time_s", 40.0, 30) == {"target": 30, "value": 40.0, "progress": 0.75,
                                                               "met": False}   # lower is better: 30 / 40
    assert goal_progress("csat", 4.5, 4.5)["met"] is True
    assert goal_progress("csat", 3.6, 4.5)["progress"] == 0.8                    # 3.6 / 4.5
    assert goal_progress("csat", None, 4.5)["met"] is None


def test_reviews_keep_the_latest_statement_per_period():
    p = run(
        ev("self_review", "2026-11-30T10:00:00", agent_id="a1", period="2026-11", score=80),
        ev("self_review", "2026-11-30T11:00:00", agent_id="a1", period="2026-11", score=85),
        ev("manager_review", "2026-11-30T12:00:00", agent_id="a1", period="2026-11", reviewer="m1", score=70),
    )
    f = p.desk.agents["a1"]
    assert f.self_reviews["2026-11"].score == 85
    assert f.manager_reviews["2026-11"].score == 70
