"""The month-end commands end to end, as a manager uses them: reviews recorded with
commands (no JSON by hand), close-month refusing then closing, the report in its
three formats, explain, plans."""

import csv
import io
import json
import uuid
from html.parser import HTMLParser

import pytest

from test_cli import cli

MONTH = "2026-11"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shop(request, tmp_path_factory):
    """A month of a 4-agent shop without its reviews (the simulator's are left out: the test gives
    them), in SQLite, then in PostgreSQL: every command works on either."""
    tmp = tmp_path_factory.mktemp("close")
    events = tmp / "events.jsonl"
    cli("simulate", "--agents", "4", "--days", "30", "--seed", "3", "--traffic", "12", "-o", str(events))
    kept = [line for line in events.read_text().splitlines() if '"type":"self_review"' not in line
            and '"type":"manager_review"' not in line]
    events.write_text("\n".join(kept) + "\n")
    url = (f"sqlite:///{tmp / 'close.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres").create_database(f"cli{uuid.uuid4().hex[:8]}"))
    cli("replay", str(events), "--db", url)
    return url, events


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.ids |= {v for k, v in attrs if k == "id"}


def test_reviews_then_close_then_report_csv_explain(shop, tmp_path):
    db, events = shop
    bad = cli("review", "manager", "agent-01", MONTH, "101", "--reviewer", "m", "--db", db, check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == "cspulse review: SCORE: must be between 0 and 100, not 101"
    for agent, (own, manager) in {"agent-01": (80, 70), "agent-02": (90, 85), "agent-03": (60, 50)}.items():
        out = cli("review", "self", agent, MONTH, str(own), "--db", db, "--at", "2026-11-30T20:00:00+08:00").stdout
        assert out.startswith(f"cspulse: recorded self_review agent_id={agent} period={MONTH} score={own:.1f}")
        cli("review", "manager", agent, MONTH, str(manager), "--reviewer", "manager-1", "--db", db,
            "--at", "2026-11-30T21:00:00+08:00")
    cli("qa-check", "agent-04", "88", "--reviewer", "sup-1", "--db", db, "--at", "2026-11-29T18:00:00+08:00")
    cli("goal", "agent-04", MONTH, "churn_rate", "0.3", "--reviewer", "manager-1", "--db", db)

    refused = cli("close-month", MONTH, "--db", db, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"cspulse close_month: {MONTH} not closed: 1 ranked agent(s) lack a review: agent-04 (self_review, "
        "manager_review). Record them with `cspulse review self|manager`, or close with --allow-missing-reviews"]
    closed = json.loads(cli("close-month", MONTH, "--allow-missing-reviews", "--json", "--db", db,
                            "--issued-at", "2026-12-02T00:30:00+08:00").stdout)
    assert closed["revision"] == 1 and closed["ranked"] == 4 and not closed["already_closed"]
    lines = closed["agents"]
    assert sorted(x["rank"] for x in lines.values()) == [1, 2, 3, 4]
    assert lines["agent-04"]["missing_reviews"] == ["self_review", "manager_review"]
    # agent-04's total is its manager component (no self review), which is its KPI, QA and management parts
    assert lines["agent-04"]["total"] == round(lines["agent-04"]["manager_component"], 2)
    assert lines["agent-02"]["self_review"] == 90 and lines["agent-02"]["manager_review"] == 85
    kinds = sorted(c["kind"] for x in lines.values() for c in x["consequences"])
    assert kinds == ["bonus", "deduction", "improvement_plan", "improvement_plan"]

    again = cli("close-month", MONTH, "--db", db).stdout
    assert "was closed at" in again and "(revision 1); nothing changed" in again

    payroll = list(csv.DictReader(io.StringIO(cli("report", MONTH, "--format", "csv", "--db", db).stdout)))
    money = {c["id"]: c["amount"] * (1 if c["kind"] == "bonus" else -1)
             for x in lines.values() for c in x["consequences"] if c["kind"] in ("bonus", "deduction")}
    assert sum(float(r["net"]) for r in payroll) == sum(money.values()) == 0
    assert {i for r in payroll for i in r["consequence_ids"].split()} == set(money)
    assert len(payroll) == 4

    html = tmp_path / "r.html"
    cli("report", MONTH, "-o", str(html), "--db", db)
    page = Page()
    page.feed(html.read_text())
    assert page.tags.count("svg") == 2 and {"scores-chart", "trend-chart", "ranking", "adjustments"} <= page.ids
    assert "agent-04" in html.read_text() and "<script" not in html.read_text()   # self-contained, no JS

    explained = cli("explain", MONTH, "--agent", "agent-02", "--db", db).stdout
    assert "inquiry_conversion_rate" in explained and "converted_inquiries" in explained
    assert f"total = 0.30 × self 90.00 + 0.70 × manager {lines['agent-02']['manager_component']:.2f}" in explained

    # with the month's events: the events behind each count, which add up to the close's counts
    traced = cli("explain", MONTH, "--agent", "agent-02", "--events", str(events), "--db", db).stdout
    counts = {line.split()[0]: line for line in traced.split("the events behind", 1)[1].splitlines()[1:]}
    for counter in ("served_customers", "responses", "inquiries", "converted_inquiries", "lost_inquiries",
                    "orders", "paid_orders", "paying_customers", "complaints"):
        assert "= the close" in counts[counter], counts[counter]
    assert "≠" not in traced

    plans = json.loads(cli("plans", "--json", "--db", db).stdout)
    bottom = sorted(a for a, x in lines.items() if x["rank_from_bottom"] <= 2)
    assert sorted(p["agent_id"] for p in plans) == bottom
    assert {p["due"] for p in plans} == {"2026-12-09T00:30:00+08:00"}


def test_report_of_a_month_not_closed_says_what_to_do(shop):
    db, _ = shop
    out = cli("report", "2026-10", "--db", db, check=False)
    assert out.returncode == 1
    assert out.stderr.strip() == "cspulse report: 2026-10 is not closed; close it first with `cspulse close-month 2026-10`"
