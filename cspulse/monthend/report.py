"""The monthly report (SPEC §5 step 8): one self-contained HTML file a manager can
open or mail, the same data as JSON, and the payroll CSV; and `explain`, which
shows how one agent's total was computed, down to the counts.

Everything comes from the stored close (frozen) and, for what happened since,
from the store: plans, post-close adjustments and the KPIs as they are now.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
from datetime import datetime
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.engine import Engine
from sqlmodel import Session

from cspulse.core import KPIS, goal_progress
from cspulse.core.kpi_names import format_kpi
from cspulse.core.facts import NOT_ROLLED_UP_TO_MONTH
from store import repo

from . import service


class NotClosed(Exception):
    """The month has no close to report on."""


# The counts behind each scorecard KPI (SPEC §3): numerator, denominator.
COUNTS = {
    "inquiry_conversion_rate": ("converted_inquiries", "inquiries"),
    "churn_rate": ("lost_inquiries", "inquiries"),
    "avg_response_time_s": (None, "responses"),
    "order_amount": (None, "orders"),
    "valid_order_ratio": ("valid_orders", "orders"),
    "payment_ratio": ("paid_orders", "orders"),
    "refund_ratio": ("refunded_orders", "paid_orders"),
    "avg_order_value": ("paid_amount", "paying_customers"),
    "complaint_ratio": ("complaints", "served_customers"),
    "abnormal_order_ratio": ("abnormal_orders", "orders"),
}
TREND = ("inquiry_conversion_rate", "avg_response_time_s", "complaint_ratio")


def report_data(engine: Engine, period: str, zone: ZoneInfo, now_us: int) -> dict:
    """All a report shows, as plain data (the JSON format)."""
    with Session(engine) as session:
        row = repo.current_close(period, session=session)
        if row is None:
            raise NotClosed(f"{period} is not closed; close it first with `cspulse close-month {period}`")
        body = json.loads(row.result)
        revisions = [{"revision": r.revision, "closed_at": r.closed_at, "changes": json.loads(r.changes)}
                     for r in repo.closes(period, session=session)]
        consequences = repo.read_consequences(period, session=session, state=None)
        adjustments = repo.read_adjustments(period, session=session)
        now = repo.read_kpis(period, session=session)
        days = {d: k.get(None, {}) for d in _days(period)
                if (k := repo.read_kpis(d, session=session))}
        goals = repo.read_goals(period, session=session)
    at_close = body["inputs"]["kpis"]
    changed = {}
    for agent, kpis in at_close.items():
        diff = {k: {"at_close": v, "now": now.get(agent, {}).get(k)} for k, v in kpis.items()
                if now.get(agent, {}).get(k) != v}
        if diff:
            changed[agent] = diff
    return {
        "period": period, "revision": row.revision, "closed_at": row.closed_at, "issued_at": body["issued_at"],
        "ranked": body["ranked"], "notes": body["notes"], "agents": body["agents"], "revisions": revisions,
        "scorecard": body["inputs"]["scorecard"], "inputs": body["inputs"],
        "consequences": [{"id": c.id, "agent_id": c.agent_id, "kind": c.kind, "amount": c.amount, "due": c.due,
                          "message": c.message, "state": c.state, "revision": c.revision,
                          "evidence": json.loads(c.evidence)} for c in consequences],
        "plans": [p.__dict__ for p in service.plan_states(engine, now_us, period)],
        "goals": {a: {k: goal_progress(k, at_close.get(a, {}).get(k), t) for k, t in g.items()}
                  for a, g in sorted(goals.items()) if a in at_close},
        "adjustments": {"events": [{"event_id": a.event_id, "type": a.type, "agent_id": a.agent_id,
                                    "customer_id": a.customer_id,
                                    "ts": datetime.fromtimestamp(a.ts_us / 1e6, zone).isoformat()}
                                   for a in adjustments],
                        "kpi_changes": changed},
        "trend": days,
    }


def payroll(data: dict) -> list[dict]:
    """Per listed agent: bonus, deduction and net (CNY) of the active consequences."""
    rows = []
    for agent in data["agents"]:
        mine = [c for c in data["consequences"] if c["agent_id"] == agent and c["state"] == "active"]
        bonus = sum(c["amount"] for c in mine if c["kind"] == "bonus")
        deduction = sum(c["amount"] for c in mine if c["kind"] == "deduction")
        rows.append({"period": data["period"], "agent_id": agent, "bonus": bonus, "deduction": deduction,
                     "net": bonus - deduction,
                     "consequence_ids": " ".join(c["id"] for c in mine if c["kind"] in ("bonus", "deduction"))})
    return rows


def render_csv(data: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["period", "agent_id", "bonus", "deduction", "net", "consequence_ids"],
                            lineterminator="\n")
    writer.writeheader()
    for row in payroll(data):
        writer.writerow({**row, **{k: f"{row[k]:.2f}" for k in ("bonus", "deduction", "net")}})
    return out.getvalue()


def render_html(data: dict) -> str:
    env = Environment(loader=PackageLoader("cspulse.monthend"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = lambda x, spec=".2f": "–" if x is None else format(x, spec)
    env.filters["kpi"] = lambda value, kpi: format_kpi(kpi, value)
    return env.get_template("report.html.j2").render(
        d=data, charts={"scores": scores_chart(data), "trend": trend_chart(data)},
        payroll=payroll(data))


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]       # drop the XML prolog and doctype: it sits inside HTML


def scores_chart(data: dict) -> str:
    """Each ranked agent's total and KPI score, best first, as an inline SVG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    ranked = [(a, x) for a, x in data["agents"].items() if x["rank"] is not None]
    agents = [a for a, _ in ranked][::-1]
    fig = Figure(figsize=(7, 0.45 * len(agents) + 1.2))
    ax = fig.subplots()
    y = range(len(agents))
    ax.barh([i + 0.2 for i in y], [x["total"] for _, x in ranked][::-1], height=0.4, label="total", color="#3b6ea8")
    ax.barh([i - 0.2 for i in y], [x["kpi_score"] or 0 for _, x in ranked][::-1], height=0.4, label="KPI score",
            color="#9cbbd9")
    for i, (_, x) in enumerate(ranked[::-1]):
        ax.text(x["total"] + 0.5, i + 0.2, f"{x['total']:.2f}", va="center", fontsize=8)
    ax.set_yticks(list(y), agents)
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (0-100)")
    ax.set_title(f"Scores by agent, {data['period']}")
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def trend_chart(data: dict) -> str:
    """The shop's daily conversion, response time and complaint ratio over the month."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    days = sorted(data["trend"])
    fig = Figure(figsize=(7, 5.5))
    axes = fig.subplots(len(TREND), 1, sharex=True)
    for ax, kpi in zip(axes, TREND):
        values = [data["trend"][d].get(kpi) for d in days]
        scale = 100 if KPIS[kpi][0] == "ratio" else 1
        ax.plot([d[8:] for d in days], [None if v is None else v * scale for v in values], marker="o",
                markersize=3, color="#3b6ea8")
        ax.set_ylabel(kpi.replace("_", " ") + (" %" if scale == 100 else ""), fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(f"day of {data['period']}")
    axes[-1].tick_params(axis="x", labelsize=7)
    fig.suptitle(f"The shop's KPI trend, {data['period']}")
    return _svg(fig)


def explain(data: dict, agent: str) -> list[str]:
    """How `agent`'s total was computed, as lines: KPIs with their counts and scores, the
    components with their weights, the reviews (with their event ids)."""
    x = data["agents"].get(agent)
    if x is None:
        raise NotClosed(f"{agent} is not in the {data['period']} close; listed: {', '.join(data['agents'])}")
    kpis = data["inputs"]["kpis"][agent]
    reviews = data["inputs"]["reviews"].get(agent, {})
    out = [f"{agent}, {data['period']} (close revision {data['revision']}): {x['reason']}"]
    out.append("KPI score = Σ weight × score / Σ weight over the KPIs with data:")
    used = 0.0
    for name, part in x["kpis"].items():
        num, den = COUNTS.get(name, (None, None))
        counts = ", ".join(f"{c} {format_kpi(c, kpis.get(c))}" for c in (num, den) if c)
        value = format_kpi(name, part["value"])
        if part["score"] is None:
            out.append(f"  {name:<24} {value:>14}  ({counts})  no data: left out")
            continue
        used += part["weight"]
        out.append(f"  {name:<24} {value:>14}  ({counts})  score {part['score']:6.2f} × weight {part['weight']:g}")
    out.append(f"  = {_n(x['kpi_score'])} (weights used: {used:g})")
    mgmt = [f"timeliness {_pct(kpis.get('report_timeliness'))}", f"truthfulness {_pct(kpis.get('report_truthfulness'))}",
            f"quality {_n(kpis.get('report_quality'))}"]
    out.append(f"QA score (mean of spot checks) = {_n(x['qa_score'])}")
    out.append(f"management score (mean of {', '.join(mgmt)}) = {_n(x['management_score'])}")
    for kind in ("self", "manager"):
        r = reviews.get(kind)
        out.append(f"{kind} review = " + (f"{r['score']:g} (event {r['event_id']}"
                                          + (f", by {r['reviewer']}" if r.get("reviewer") else "") + ")"
                                          if r else "missing: left out, weights renormalised"))
    w = data["inputs"]["weights"]
    parts = (("kpi", "KPI", x["kpi_score"]), ("qa", "QA", x["qa_score"]),
             ("management", "management", x["management_score"]), ("manager_review", "review", x["manager_review"]))
    mgr_w = sum(w[k] for k, *_ in parts)
    out.append("manager component = (" + " + ".join(f"{w[k] / mgr_w:.2f} × {label} {_n(v)}" for k, label, v in parts)
               + f") over the parts present = {_n(x['manager_component'])}")
    top_w = w["self_review"] + w["manager"]
    out.append(f"total = {w['self_review'] / top_w:.2f} × self {_n(x['self_review'])} + {w['manager'] / top_w:.2f} × "
               f"manager {_n(x['manager_component'])} = {_n(x['total'])} (rounded half up to 2 decimals)")
    if x["rank"] is not None:
        out.append(f"rank {x['rank']} of {data['ranked']} ({x['rank_from_bottom']} from the bottom)")
    for c in x["consequences"]:
        out.append(f"consequence {c['id']}: {c['message']}")
    changed = data["adjustments"]["kpi_changes"].get(agent)
    if changed:
        out.append("since the close (post-close adjustments, not in the result): " + ", ".join(
            f"{k} {format_kpi(k, v['at_close'])} -> {format_kpi(k, v['now'])}" for k, v in changed.items()))
    return out


def _n(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _pct(x) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def _days(period: str) -> list[str]:
    y, m = int(period[:4]), int(period[5:7])
    return [f"{period}-{d:02d}" for d in range(1, calendar.monthrange(y, m)[1] + 1)]


# The counts an agent's month is made of, as the core counts them (facts), for `explain --events`.
TRACED = ("served_customers", "responses", "inquiries", "converted_inquiries", "lost_inquiries", "orders",
          "paid_orders", "valid_orders", "refunded_orders", "abnormal_orders", "paying_customers", "complaints",
          "qa_checks", "reports_submitted", "reports_on_time", "reports_audited", "reports_truthful")


def trace_counts(pipeline, agent: str, month: str) -> dict[str, list[tuple[str, int]]]:
    """{counter: [(cause, delta)]} of `agent`'s `month` from a pipeline run with tracing
    (`pipeline.ledger.trace`): the event id (or the timer) behind every count."""
    out: dict[str, list[tuple[str, int]]] = {c: [] for c in TRACED}
    for cause, facts in pipeline.ledger.trace:
        name = cause if isinstance(cause, str) else f"{cause[0]} timer of customer {cause[1]}"
        for who, period, counter, delta in facts:
            # a distinct count's month comes as facts of its own, not as the sum of its days
            if who == agent and counter in out and (
                    period == month if counter in NOT_ROLLED_UP_TO_MONTH else period[:7] == month):
                out[counter].append((name, delta))
    return out


def explain_events(data: dict, agent: str, traced: dict[str, list[tuple[str, int]]], source: str,
                   show: int = 6) -> list[str]:
    """The events behind each count of `agent`'s close, checked against the close's own figures."""
    kpis = data["inputs"]["kpis"].get(agent, {})
    out = [f"the events behind {agent}'s {data['period']} counts (replayed from {source}):"]
    for counter, items in traced.items():
        total = sum(d for _, d in items)
        closed = kpis.get(counter)
        check = "" if closed is None else ("  = the close" if total == closed else f"  ≠ the close's {closed}")
        causes = list(dict.fromkeys(c for c, d in items if d > 0))
        shown = ", ".join(causes[:show]) + (f", … (+{len(causes) - show})" if len(causes) > show else "")
        taken = sum(1 for _, d in items if d < 0)
        out.append(f"  {counter:<20} {total:>6,}{check}" + (f"  from {shown}" if causes else "")
                   + (f"; {taken} taken back later" if taken else ""))
    return out
