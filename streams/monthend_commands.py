"""The month-end commands: the inputs a manager gives (reviews, spot checks, goals,
improvement plans), `close-month`, `plans`, `report` and `explain`.

An input command builds the SPEC §2 event, validates it as the worker would, and
emits it: into the local store (embedded mode, the default) or, with --kafka, to
the `cs.reviews` / `cs.feedback` topic.  So a manager never writes JSON by hand,
and the log of events stays the source of truth.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime
from pathlib import Path

import click
from faust.cli import argument, option
from sqlmodel import Session

from cspulse import embedded
from cspulse.core import Pipeline, Rejected, decode
from cspulse.core.shopclock import to_us
from cspulse.embedded import InputError, Source
from cspulse.monthend import report as monthend_report
from cspulse.monthend import service
from cspulse.settings import Settings
from store import repo
from streams import views
from streams.alerting import now_us
from streams.commands import DB, UsageError, db_url, embedded_command, one_line_errors, parse_time
from streams.produce import produce as send_to_kafka

SETTINGS: Settings = Settings.model_construct()

KAFKA = option("--kafka", "to_kafka", is_flag=True,
               help="Send the event to Kafka ($CSPULSE_KAFKA) instead of the local store")
AT = option("--at", default=None, help="Event time, ISO-8601 with offset [default: now]")


def parse_month(value: str, name: str = "PERIOD") -> str:
    try:
        datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise UsageError(f"{name}: '{value}' is not a month YYYY-MM") from None
    if len(value) != 7:
        raise UsageError(f"{name}: '{value}' is not a month YYYY-MM")
    return value


def time_or_now(value: str | None, name: str) -> datetime:
    return datetime.now(SETTINGS.params().zone) if value is None else parse_time(value, name)


def emit(kind: str, fields: dict, *, to_kafka: bool, db: str | None, at: str | None) -> None:
    """Validate one event and send it on; print one line saying where it went."""
    ts = time_or_now(at, "--at")
    event = {"event_id": f"{kind}-{uuid.uuid4().hex[:16]}", "type": kind, "ts": ts.isoformat(),
             "shop_id": SETTINGS.shop_id, **{k: v for k, v in fields.items() if v is not None}}
    line = json.dumps(event, ensure_ascii=False).encode()
    checked = decode(line)
    if isinstance(checked, Rejected):
        raise UsageError(f"not recorded: {checked.reason}")
    source = Source(f"cspulse {kind}", len(line), iter([line]))
    if to_kafka:
        send_to_kafka([source], bootstrap=SETTINGS.kafka, prefix=SETTINGS.topic_prefix,
                      partitions=SETTINGS.partitions)
        where = f"Kafka {SETTINGS.kafka}"
    else:
        url = db_url(db)
        embedded.replay([source], engine=repo.connect(url), params=SETTINGS.params(), rules=SETTINGS.rules)
        where = url
    about = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None and k != "text")
    print(f"cspulse: recorded {kind} {about} -> {where} (event {event['event_id']})")


def check_score(value: float, name: str = "SCORE") -> float:
    if not 0 <= value <= 100:
        raise UsageError(f"{name}: must be between 0 and 100, not {value:g}")
    return value


@embedded_command(
    argument("kind", type=click.Choice(["self", "manager"])),
    argument("agent"), argument("period"), argument("score", type=float),
    option("--reviewer", default=None, help="Who reviews (required for a manager review)"),
    option("--note", default=None, help="A comment kept with the review"),
    KAFKA, AT, DB,
)
@one_line_errors
async def review(self, kind: str, agent: str, period: str, score: float, reviewer: str | None, note: str | None,
                 to_kafka: bool, at: str | None, db: str | None) -> None:
    """Record a self review or the store manager's review (0-100) of AGENT for PERIOD (YYYY-MM)."""
    if kind == "manager" and not reviewer:
        raise UsageError("--reviewer: a manager review names its reviewer, e.g. --reviewer manager-1")
    fields = {"agent_id": agent, "period": parse_month(period), "score": check_score(score),
              "note": note, **({"reviewer": reviewer} if kind == "manager" else {})}
    emit(f"{kind}_review", fields, to_kafka=to_kafka, db=db, at=at)


@embedded_command(
    argument("agent"), argument("score", type=float),
    option("--reviewer", required=True, help="The supervisor who did the spot check"),
    option("--conversation", default=None, help="The conversation checked"),
    KAFKA, AT, DB,
)
@one_line_errors
async def qa_check(self, agent: str, score: float, reviewer: str, conversation: str | None, to_kafka: bool,
                   at: str | None, db: str | None) -> None:
    """Record a QA spot check (0-100) of one of AGENT's conversations."""
    emit("qa_check", {"agent_id": agent, "reviewer": reviewer, "score": check_score(score),
                      "conversation_id": conversation}, to_kafka=to_kafka, db=db, at=at)


@embedded_command(
    argument("agent"), argument("period"), argument("kpi"), argument("target", type=float),
    option("--reviewer", required=True, help="Who agreed the goal with the agent"),
    KAFKA, AT, DB,
)
@one_line_errors
async def goal(self, agent: str, period: str, kpi: str, target: float, reviewer: str, to_kafka: bool,
               at: str | None, db: str | None) -> None:
    """Agree a target for one KPI of AGENT for PERIOD (YYYY-MM), e.g. inquiry_conversion_rate 0.45."""
    emit("goal_set", {"agent_id": agent, "period": parse_month(period), "kpi": kpi, "target": target,
                      "reviewer": reviewer}, to_kafka=to_kafka, db=db, at=at)


@embedded_command(
    argument("action", type=click.Choice(["submit", "accept", "reject"])),
    argument("agent"), argument("period"),
    option("--text", default=None, help="submit: the plan (or @FILE to read it from a file)"),
    option("--by", default=None, help="accept/reject: the manager deciding"),
    option("--note", default=None, help="accept/reject: why"),
    KAFKA, AT, DB,
)
@one_line_errors
async def plan(self, action: str, agent: str, period: str, text: str | None, by: str | None, note: str | None,
               to_kafka: bool, at: str | None, db: str | None) -> None:
    """Submit AGENT's improvement plan for PERIOD, or accept or reject it (a manager)."""
    period = parse_month(period)
    if action == "submit":
        if not text:
            raise UsageError("--text: say what the plan is (or --text @plan.txt)")
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text(encoding="utf-8")
            except OSError as e:
                raise InputError(f"--text: cannot read {text[1:]} ({e.strerror})") from None
        emit("improvement_plan_submitted", {"agent_id": agent, "period": period, "text": text},
             to_kafka=to_kafka, db=db, at=at)
        return
    if not by:
        raise UsageError(f"--by: say which manager {action}s the plan, e.g. --by manager-1")
    engine = repo.connect(db_url(db), must_exist=True)
    found = {(p.period, p.agent_id): p for p in service.plan_states(engine, now_us(), period)}
    state = found.get((period, agent))
    if state is None:
        raise InputError(f"{agent} has no improvement plan required for {period}; see `cspulse plans`")
    if state.submitted_at_us is None:
        raise InputError(f"{agent} has not submitted the plan for {period} yet (it is {state.state})")
    with Session(engine) as session:
        repo.decide_plan(period, agent, f"{action}ed", by, note, session=session)
        session.commit()
    print(f"cspulse: {agent}'s improvement plan for {period} {action}ed by {by}")


@embedded_command(
    option("--period", default=None, help="Only plans required by this month's close"),
    option("--json", "as_json", is_flag=True),
    DB,
)
@one_line_errors
async def plans(self, period: str | None, as_json: bool, db: str | None) -> None:
    """The improvement plans month-end closes required, and where each stands (as of now)."""
    engine = repo.connect(db_url(db), must_exist=True)
    found = service.plan_states(engine, now_us(), parse_month(period, "--period") if period else None)
    if as_json:
        print(json.dumps([p.__dict__ for p in found], ensure_ascii=False))
        return
    if not found:
        print("cspulse plans: no improvement plan required (yet)", file=sys.stderr)
        return
    views.console().print(views.plan_table(found, SETTINGS.params().zone))


@embedded_command(
    argument("period"),
    option("--json", "as_json", is_flag=True, help="Print the result as JSON"),
    option("--reopen", is_flag=True, help="Recompute a closed month as a new revision and list what changed"),
    option("--allow-missing-reviews", is_flag=True,
           help="Close even when a ranked agent lacks a review (left out and renormalised)"),
    option("--issued-at", default=None, help="When the report is issued (plans are due 7 days later) "
                                              "[default: now; on --reopen: the first issue's]"),
    DB,
)
@one_line_errors
async def close_month(self, period: str, as_json: bool, reopen: bool, allow_missing_reviews: bool,
                      issued_at: str | None, db: str | None) -> None:
    """Close PERIOD (YYYY-MM): scores, ranking and consequences (SPEC §5), kept as a revision."""
    period = parse_month(period)
    issued = parse_time(issued_at, "--issued-at") if issued_at else None
    engine = repo.connect(db_url(db), must_exist=True)
    zone = SETTINGS.params().zone
    try:
        closed = service.close_month(engine, period, zone=zone, card=SETTINGS.scorecard, rules=SETTINGS.month_end,
                                     now=datetime.now(zone), issued_at=issued, allow_missing=allow_missing_reviews,
                                     reopen=reopen)
    except service.MissingReviews as e:
        raise InputError(str(e)) from None
    show_close(closed, as_json)


def show_close(closed: service.Closed, as_json: bool) -> None:
    body = closed.result
    if as_json:
        out = {k: v for k, v in body.items() if k != "inputs"}
        out.update(revision=closed.revision, closed_at=closed.closed_at, already_closed=closed.already,
                   changes=closed.changes)
        print(json.dumps(out, ensure_ascii=False))
        return
    out = views.console()
    if closed.already:
        out.print(f"{closed.period} was closed at {closed.closed_at[:19]} (revision {closed.revision}); "
                  f"nothing changed. Recompute with --reopen.")
    title = (f"{closed.period} close, revision {closed.revision}: report issued {body['issued_at'][:16]}, "
             f"{body['ranked']} agents ranked")
    out.print(views.close_table(body, title))
    for note in body["notes"]:
        out.print(f"[yellow]note:[/yellow] {note}")
    if closed.changes:
        out.print(f"[bold]changes from revision {closed.revision - 1}:[/bold]")
        for change in closed.changes:
            out.print(f"  {change}")
    elif closed.revision > 1 and not closed.already:
        out.print(f"no change from revision {closed.revision - 1}")


@embedded_command(
    argument("period"),
    option("--format", "fmt", type=click.Choice(["html", "json", "csv"]), default="html", show_default=True,
           help="html: the report a manager reads; json: its data; csv: the payroll file"),
    option("-o", "--output", default=None, help="File to write [default: cspulse-report-PERIOD.html; json/csv: stdout]"),
    DB,
)
@one_line_errors
async def report(self, period: str, fmt: str, output: str | None, db: str | None) -> None:
    """The monthly report of a closed month: HTML (ranking, KPIs, consequences, charts), JSON or payroll CSV."""
    period = parse_month(period)
    data = _report_data(period, db)
    text = {"html": monthend_report.render_html, "csv": monthend_report.render_csv,
            "json": lambda d: json.dumps(d, ensure_ascii=False, indent=1)}[fmt](data)
    if output is None and fmt == "html":
        output = f"cspulse-report-{period}.html"
    if output is None or output == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as e:
        raise InputError(f"-o: cannot write {output} ({e.strerror})") from None
    print(f"cspulse report: {period} ({fmt}, revision {data['revision']}) -> {output}", file=sys.stderr)


@embedded_command(
    argument("period"),
    option("--agent", required=True, help="The agent whose total to explain"),
    option("--events", default=None, help="The month's event file(s), comma-separated: list the events behind "
                                          "each count (replayed in memory, checked against the close)"),
    option("--until", default=None, help="With --events: evaluate time as of this ISO-8601 time "
                                         "[default: the newest event]"),
    DB,
)
@one_line_errors
async def explain(self, period: str, agent: str, events: str | None, until: str | None, db: str | None) -> None:
    """How AGENT's total for a closed PERIOD was computed, down to the counts and the events behind them."""
    period = parse_month(period)
    data = _report_data(period, db)
    try:
        lines = monthend_report.explain(data, agent)
    except monthend_report.NotClosed as e:
        raise InputError(str(e)) from None
    if events:
        pipeline = Pipeline(SETTINGS.params())
        pipeline.ledger.trace = []
        for source in embedded.open_sources(events.split(",")):
            for line in source.lines:
                if line.strip():
                    pipeline.feed_line(line)
        pipeline.finish(to_us(parse_time(until, "--until")) if until else None)
        lines += monthend_report.explain_events(data, agent, monthend_report.trace_counts(pipeline, agent, period),
                                                events)
    print("\n".join(lines))


def _report_data(period: str, db: str | None) -> dict:
    engine = repo.connect(db_url(db), must_exist=True)
    try:
        return monthend_report.report_data(engine, period, SETTINGS.params().zone,
                                           now_us())
    except monthend_report.NotClosed as e:
        raise InputError(str(e)) from None


@embedded_command(
    argument("action", type=click.Choice(["current", "upgrade", "downgrade"])),
    argument("revision", required=False),
    DB,
)
@one_line_errors
async def db(self, action: str, revision: str | None, db: str | None) -> None:
    """The store's schema: which migration it is at, or migrate it (upgrade [REV], downgrade REV)."""
    from sqlalchemy import create_engine

    from store import migrate
    engine = create_engine(db_url(db))
    if action == "downgrade" and not revision:
        raise UsageError("REVISION: say where to go down to, e.g. 0001, or base for an empty database")
    before = migrate.current(engine)
    if action == "upgrade":
        migrate.upgrade(engine, revision or "head")
    elif action == "downgrade":
        migrate.downgrade(engine, revision)
    after = migrate.current(engine)
    print(f"{db_url(db)}: schema {after or 'empty'} (newest: {migrate.head()})"
          + (f", was {before or 'empty'}" if after != before else ""))
