"""What a person reads: KPI tables, replay summaries, one-line errors (rich)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from cspulse.core import KPIS
from cspulse.core.kpi_names import format_kpi

# The scheme's own names for its headline KPIs, as the shop's staff say them.
CHINESE = {
    "inquiry_conversion_rate": "询单转化率", "avg_response_time_s": "平均响应时间", "churn_rate": "客户流失率",
    "order_amount": "订单总金额", "valid_order_ratio": "有效订单比重", "payment_ratio": "付款比例",
    "refund_ratio": "退款比例", "avg_order_value": "客单价", "complaint_ratio": "投诉比重",
    "abnormal_order_ratio": "异常订单比重",
}
HEADLINE = ("served_customers", "inquiries", "inquiry_conversion_rate", "avg_response_time_s",
            "first_response_time_s", "churn_rate", "order_amount", "valid_order_ratio", "payment_ratio",
            "refund_ratio", "avg_order_value", "complaint_ratio", "abnormal_order_ratio")
SHORT = {
    "served_customers": "served", "inquiries": "inquiries", "inquiry_conversion_rate": "conversion",
    "avg_response_time_s": "avg resp", "first_response_time_s": "first resp", "churn_rate": "churn",
    "order_amount": "order amount", "valid_order_ratio": "valid", "payment_ratio": "paid",
    "refund_ratio": "refund", "avg_order_value": "AOV", "complaint_ratio": "complaints",
    "abnormal_order_ratio": "abnormal",
}


def console(stderr: bool = False) -> Console:
    # Piped output keeps a wide table rather than wrapping every cell.
    return Console(stderr=stderr, width=None if (sys.stderr if stderr else sys.stdout).isatty() else 180)


fmt = format_kpi


def kpi_table(period: str, agents: dict[str, dict], shop: dict) -> Table:
    """Agents as rows, the scheme's headline KPIs as columns, the shop as the last row."""
    t = Table(title=f"KPIs {period}  (– = no data)", header_style="bold")
    t.add_column("agent", no_wrap=True)
    for k in HEADLINE:
        t.add_column(SHORT[k] + (f"\n{CHINESE[k]}" if k in CHINESE else ""), justify="right")
    for agent, kpis in agents.items():
        t.add_row(agent, *(fmt(k, kpis.get(k)) for k in HEADLINE))
    t.add_section()
    t.add_row("[bold]shop[/bold]", *(fmt(k, shop.get(k)) for k in HEADLINE))
    return t


def agent_table(period: str, agent: str, kpis: dict, goals: dict[str, dict]) -> Table:
    """Every KPI of one agent, with its goal and the progress toward it."""
    t = Table(title=f"{agent} — {period}", header_style="bold")
    for col, justify in (("KPI", "left"), ("", "left"), ("value", "right"), ("goal", "right"),
                         ("progress", "right")):
        t.add_column(col, justify=justify)
    for k in KPIS:
        goal = goals.get(k)
        if goal:
            mark = "[green]met[/green]" if goal["met"] else ("–" if goal["met"] is None else "[red]not met[/red]")
            progress = "–" if goal["progress"] is None else f"{goal['progress'] * 100:.0f}% {mark}"
            t.add_row(k, CHINESE.get(k, ""), fmt(k, kpis.get(k)), fmt(k, goal["target"]), progress)
        else:
            t.add_row(k, CHINESE.get(k, ""), fmt(k, kpis.get(k)), "", "")
    return t


def replay_summary(run, reasons, seconds: float) -> Table:
    t = Table(title="replay", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    rate = run.read / seconds if seconds else 0
    for label, value in (("events read", run.read), ("applied", run.applied), ("duplicates", run.duplicates),
                         ("rejected", run.rejected), ("late (beyond allowed lateness)", run.late)):
        t.add_row(label, f"{value:,}")
    for reason, n in reasons.most_common(10):
        t.add_row(f"  rejected: {reason}", f"{n:,}")
    t.add_row("time", f"{seconds:.1f} s ({rate:,.0f} events/s)")
    return t


def produce_summary(summary, prefix: str, seconds: float) -> Table:
    t = Table(title="produce", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("lines read", f"{summary.read:,}")
    for topic, n in sorted(summary.sent.items()):
        t.add_row(f"  -> {prefix}{topic}", f"{n:,}")
    for reason, n in summary.rejected.most_common(10):
        t.add_row(f"  rejected: {reason}", f"{n:,}")
    rate = summary.read / seconds if seconds else 0
    t.add_row("time", f"{seconds:.1f} s ({rate:,.0f} events/s)")
    return t


_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def alert_table(alerts, title: str, zone, limit: int | None = None) -> Table:
    """Alerts, oldest first: when it fired (shop time), rule, severity, agent, state, message."""
    from cspulse.core.shopclock import from_us
    shown = alerts if limit is None else alerts[-limit:]
    more = f", the last {len(shown)} shown" if len(shown) < len(alerts) else ""
    t = Table(title=f"{title} ({len(alerts):,}{more})", header_style="bold")
    for col in ("fired", "rule", "severity", "agent", "state", "message"):
        t.add_column(col, no_wrap=col != "message")
    for a in shown:
        state = a.state if a.state == "firing" else f"resolved {from_us(a.resolved_at, zone):%m-%d %H:%M}"
        t.add_row(f"{from_us(a.fired_at, zone):%Y-%m-%d %H:%M:%S}", a.rule,
                  f"[{_SEVERITY_STYLE[a.severity]}]{a.severity}[/]", a.agent_id or "(shop)", state, a.message)
    return t


def alert_counts(alerts) -> Table:
    """Alerts per rule and state: the shape of a month at a glance."""
    from collections import Counter
    counts = Counter((a.rule, a.severity, a.state) for a in alerts)
    t = Table(title="alerts per rule", header_style="bold")
    for col, justify in (("rule", "left"), ("severity", "left"), ("firing", "right"), ("resolved", "right")):
        t.add_column(col, justify=justify)
    for rule, severity in sorted({(r, s) for r, s, _ in counts}):
        t.add_row(rule, f"[{_SEVERITY_STYLE[severity]}]{severity}[/]", f"{counts[(rule, severity, 'firing')]:,}",
                  f"{counts[(rule, severity, 'resolved')]:,}")
    return t


def _n(x, spec=".2f") -> str:
    return "–" if x is None else format(x, spec)


def _money(consequences: list[dict]) -> str:
    parts = []
    for c in consequences:
        if c["kind"] == "bonus":
            parts.append(f"[green]+¥{c['amount']:g} bonus[/green]")
        elif c["kind"] == "deduction":
            parts.append(f"[red]−¥{c['amount']:g} deduction[/red]")
        elif c["kind"] == "improvement_plan":
            parts.append(f"[yellow]plan due {c['due'][:10]}[/yellow]")
        else:
            parts.append("[bold red]reassignment recommended[/bold red]")
    return ", ".join(parts)


def close_table(body: dict, title: str) -> Table:
    """The month's ranking: rank (and from the bottom), every component, the consequences;
    unranked agents below, with the reason."""
    t = Table(title=title, header_style="bold")
    for col, justify in (("rank", "right"), ("from\nbottom", "right"), ("agent", "left"), ("total", "right"),
                         ("self\n30%", "right"), ("manager\n70%", "right"), ("KPI\n60%", "right"),
                         ("QA\n10%", "right"), ("mgmt\n10%", "right"), ("review\n20%", "right"),
                         ("served", "right"), ("consequences", "left")):
        t.add_column(col, justify=justify, no_wrap=col != "consequences")
    unranked = []
    for agent, x in body["agents"].items():
        if x["rank"] is None:
            unranked.append((agent, x))
            continue
        mark = " [yellow](missing: " + ", ".join(x["missing_reviews"]) + ")[/yellow]" if x["missing_reviews"] else ""
        t.add_row(str(x["rank"]), str(x["rank_from_bottom"]), agent + mark, f"[bold]{_n(x['total'])}[/bold]",
                  _n(x["self_review"], ".1f"), _n(x["manager_component"]), _n(x["kpi_score"]), _n(x["qa_score"]),
                  _n(x["management_score"]), _n(x["manager_review"], ".1f"), str(x["served_customers"]),
                  _money(x["consequences"]))
    if unranked:
        t.add_section()
        for agent, x in unranked:
            t.add_row("–", "–", f"[dim]{agent}[/dim]", _n(x["total"]), _n(x["self_review"], ".1f"),
                      _n(x["manager_component"]), _n(x["kpi_score"]), _n(x["qa_score"]), _n(x["management_score"]),
                      _n(x["manager_review"], ".1f"), str(x["served_customers"]), f"[dim]{x['reason']}[/dim]")
    return t


def plan_table(plans, zone) -> Table:
    """Improvement plans: who, for which month, due when, and where each stands."""
    from datetime import datetime
    colour = {"overdue": "red", "required": "yellow", "submitted": "cyan", "accepted": "green", "rejected": "red"}
    t = Table(title="improvement plans", header_style="bold")
    for col in ("month", "agent", "due", "state", "submitted", "decided by"):
        t.add_column(col)
    for p in plans:
        submitted = ("–" if p.submitted_at_us is None
                     else datetime.fromtimestamp(p.submitted_at_us / 1e6, zone).strftime("%Y-%m-%d %H:%M"))
        t.add_row(p.period, p.agent_id, p.due[:16].replace("T", " "), f"[{colour[p.state]}]{p.state}[/]",
                  submitted, p.decided_by or "–")
    return t
