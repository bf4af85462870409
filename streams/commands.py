"""The embedded commands: replay, kpis, simulate, demo.

Each is a thin shell: check the arguments (a wrong one gets one line saying what
is wrong, exit 2), call the application service, show the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import sys
import time
from datetime import date, datetime
from pathlib import Path

import click
from faust.cli import AppCommand, argument, option
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session

from cspulse.core import SHOP, goal_progress, kpis_from_counts
from cspulse.core.shopclock import to_us
from cspulse import embedded
from cspulse.embedded import InputError, open_sources
from cspulse.settings import Settings
from cspulse.simulate import Simulator
from cspulse.core import Pipeline
from rules.engine import RuleEngine
from rules.load import RuleFileError
from rules.month_end import MonthEndRules, load_any
from cspulse.monthend.scoring import Scorecard
from rules.runner import AlertRunner
from store import repo
from streams import views
from streams.app import app
from streams.produce import KafkaUnavailable
from streams.produce import produce as send_to_kafka

SETTINGS: Settings = Settings.model_construct()


class EmbeddedCommand(AppCommand):
    """A command that needs no broker: run it on a plain event loop, not inside a
    Faust worker (whose shutdown alone takes a second)."""

    def __call__(self, *args, **kwargs):
        asyncio.run(self.run(*(self.args + args), **{**self.kwargs, **kwargs}))
        sys.exit(0)


def embedded_command(*options):
    return app.command(*options, base=EmbeddedCommand)


class UsageError(Exception):
    """A bad argument: said in one line, exit code 2."""


def one_line_errors(fn):
    """Turn the errors a user can cause into one line on stderr, never a traceback."""
    @functools.wraps(fn)
    async def wrapper(self, *args, **kwargs):
        try:
            return await fn(self, *args, **kwargs)
        except UsageError as e:
            print(f"cspulse {fn.__name__}: {e}", file=sys.stderr)
            sys.exit(2)
        except (InputError, ValueError, repo.MissingDatabase, KafkaUnavailable, RuleFileError) as e:
            print(f"cspulse {fn.__name__}: {e}", file=sys.stderr)
            sys.exit(1)
        except ArgumentError as e:
            print(f"cspulse {fn.__name__}: --db: not a database URL ({e}); e.g. sqlite:///cspulse.db", file=sys.stderr)
            sys.exit(2)
        except OperationalError as e:
            reason = str(e.orig) if e.orig else str(e)
            print(f"cspulse {fn.__name__}: database error: {reason}", file=sys.stderr)
            sys.exit(1)
        except BrokenPipeError:
            sys.exit(0)
    return wrapper


def parse_period(value: str) -> str:
    for fmt, kind in (("%Y-%m-%d", "day"), ("%Y-%m", "month")):
        try:
            datetime.strptime(value, fmt)
        except ValueError:
            continue
        if (kind == "day" and len(value) == 10) or (kind == "month" and len(value) == 7):
            return value
    raise UsageError(f"--period: '{value}' is not a day YYYY-MM-DD or a month YYYY-MM")


def parse_time(value: str, name: str) -> datetime:
    """An ISO-8601 time with a UTC offset, or one line saying what is wrong."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{name}: '{value}' is not an ISO-8601 time (e.g. 2026-11-30T23:59:59+08:00)") from None
    if dt.tzinfo is None:
        raise UsageError(f"{name}: '{value}' has no UTC offset; add one, e.g. {value}+08:00")
    return dt


def parse_until(value: str | None) -> int | None:
    return None if value is None else to_us(parse_time(value, "--until"))


def db_url(db: str | None) -> str:
    return db or SETTINGS.database_url


DB = option("--db", default=None, help="Database URL [default: $CSPULSE_DATABASE_URL or sqlite:///cspulse.db]")


@contextlib.contextmanager
def _progress_bar(verb: str):
    """A per-file progress bar on stderr; yields the `progress(name, done, total)` callback."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=views.console(stderr=True),
                  transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"{verb} {name}", total=total or None)
            bar.update(tasks[name], completed=done, total=total or None)

        yield progress


def _replay_with_progress(paths, url: str, until: int | None):
    sources = open_sources(paths)
    engine = repo.connect(url)
    started = time.perf_counter()
    with _progress_bar("replay") as progress:
        pipeline, run, reasons = embedded.replay(sources, engine=engine, params=SETTINGS.params(), until=until,
                                                 progress=progress, rules=SETTINGS.rules)
    return pipeline, run, reasons, time.perf_counter() - started


@embedded_command(
    argument("files", nargs=-1, required=True),
    DB,
    option("--until", default=None, help="Evaluate unanswered waits and inquiry windows as of this ISO-8601 time "
                                          "[default: the newest event time]"),
)
@one_line_errors
async def replay(self, files: tuple[str, ...], db: str | None, until: str | None) -> None:
    """Run JSON-lines event files (- for stdin) through the KPI core into the store."""
    until_us = parse_until(until)
    _, run, reasons, seconds = _replay_with_progress(files, db_url(db), until_us)
    views.console().print(views.replay_summary(run, reasons, seconds))


@embedded_command(
    option("--state", type=click.Choice(["firing", "resolved", "all"]), default="all", show_default=True),
    option("--agent", default=None, help="Only this agent's alerts"),
    option("--json", "as_json", is_flag=True, help="Print a JSON list of alerts"),
    DB,
)
@one_line_errors
async def alerts(self, state: str, agent: str | None, as_json: bool, db: str | None) -> None:
    """Show the stored alerts (SPEC §4), oldest first."""
    engine = repo.connect(db_url(db), must_exist=True)
    with Session(engine) as session:
        found = repo.read_alerts(session=session, state=None if state == "all" else state, agent_id=agent)
    if as_json:
        print(json.dumps([a.as_json() for a in found], ensure_ascii=False))
        return
    if not found:
        print(f"cspulse alerts: no {'' if state == 'all' else state + ' '}alerts stored"
              f"{f' for {agent}' if agent else ''}", file=sys.stderr)
        return
    views.console().print(views.alert_table(found, "alerts", SETTINGS.params().zone))


@embedded_command(
    argument("action", type=click.Choice(["check"])),
    argument("file"),
    option("--events", default=None, help="A JSON-lines event file to dry-run the rules on (nothing is stored)"),
    option("--json", "as_json", is_flag=True, help="With --events: print the alerts as a JSON list"),
)
@one_line_errors
async def rules(self, action: str, file: str, events: str | None, as_json: bool) -> None:
    """Validate a rule file (alerts, scorecard or month-end); with --events, show which alerts it would fire."""
    ruleset = load_any(file)
    if isinstance(ruleset, Scorecard):
        print(f"{file}: scorecard, valid: {len(ruleset.kpis)} KPIs weighing "
              f"{sum(s.weight for s in ruleset.kpis):g}, ranked from {ruleset.min_served_customers} served customers")
        return
    if events is None or isinstance(ruleset, MonthEndRules):
        print(f"{file}: {len(ruleset.rules)} rules, valid: " + ", ".join(r.name for r in ruleset.rules))
        if events is not None:
            raise UsageError("--events: month-end rules run at the close, not on events; try `cspulse close-month`")
        return
    source, = open_sources([events])
    params = dataclasses.replace(SETTINGS.params(), wait_checks_s=ruleset.wait_checks_s)
    pipeline = Pipeline(params)
    runner = AlertRunner(pipeline, RuleEngine(ruleset, params))
    for line in source.lines:
        if line.strip():
            pipeline.feed_line(line)
            runner.step()
    runner.finish()
    fired = sorted(runner.engine.alerts.alerts.values(), key=lambda a: (a.fired_at, a.key))
    if as_json:
        print(json.dumps([a.as_json() for a in fired], ensure_ascii=False))
        return
    out = views.console()
    out.print(f"{file}: {len(ruleset.rules)} rules, valid; dry run on {events} "
              f"({pipeline.stats.read:,} events, {pipeline.stats.rejected_total:,} rejected)")
    out.print(views.alert_counts(fired))
    out.print(views.alert_table(fired, "alerts that would fire", params.zone, limit=30))


@embedded_command(
    argument("files", nargs=-1, required=True),
    option("--topic-prefix", default=None, help="Prefix of every topic name [default: $CSPULSE_TOPIC_PREFIX]"),
    option("--partitions", type=int, default=None,
           help="Partitions of topics created here [default: $CSPULSE_PARTITIONS or 8]"),
)
@one_line_errors
async def produce(self, files: tuple[str, ...], topic_prefix: str | None, partitions: int | None) -> None:
    """Send JSON-lines event files (- for stdin) to the Kafka topics, keyed as SPEC §2 says."""
    if partitions is not None and partitions < 1:
        raise UsageError(f"--partitions: must be at least 1, not {partitions}")
    sources = open_sources(files)
    prefix = SETTINGS.topic_prefix if topic_prefix is None else topic_prefix
    started = time.perf_counter()
    with _progress_bar("produce") as progress:
        summary = send_to_kafka(sources, bootstrap=SETTINGS.kafka, prefix=prefix,
                       partitions=partitions or SETTINGS.partitions, progress=progress)
    views.console().print(views.produce_summary(summary, prefix, time.perf_counter() - started))


@embedded_command(
    option("--period", required=True, help="A day YYYY-MM-DD or a month YYYY-MM"),
    option("--agent", default=None, help="Show one agent: every KPI, with goals"),
    option("--json", "as_json", is_flag=True, help="Print the SPEC §6 JSON object"),
    DB,
)
@one_line_errors
async def kpis(self, period: str, agent: str | None, as_json: bool, db: str | None) -> None:
    """Show the KPIs of a day or month, per agent and for the shop."""
    period = parse_period(period)
    engine = repo.connect(db_url(db), must_exist=True)
    with Session(engine) as session:
        rows = repo.read_kpis(period, session=session, agent_id=agent)
        goals = repo.read_goals(period[:7], session=session)
    shop = rows.pop(SHOP, None) or kpis_from_counts({})
    if agent is not None and agent not in rows:
        raise InputError(f"--agent: '{agent}' has no data in {period}")
    progress = {a: {k: goal_progress(k, rows[a].get(k), t) for k, t in g.items()}
                for a, g in sorted(goals.items()) if a in rows and period[:7] == period[:7]}
    if as_json:
        print(json.dumps({"period": period, "agents": dict(sorted(rows.items())), "shop": shop,
                          "goals": progress}, ensure_ascii=False))
        return
    out = views.console()
    if not rows:
        print(f"cspulse kpis: no KPIs stored for {period}; run `cspulse replay FILE` first", file=sys.stderr)
    if agent is not None:
        out.print(views.agent_table(period, agent, rows[agent], progress.get(agent, {})))
    else:
        out.print(views.kpi_table(period, dict(sorted(rows.items())), shop))


@embedded_command(
    option("--agents", type=int, default=20, show_default=True, help="Number of agents"),
    option("--days", type=int, default=30, show_default=True, help="Number of days"),
    option("--seed", type=int, default=1, show_default=True, help="Random seed (same seed, same events)"),
    option("--start", default="2026-11-01", show_default=True, help="First day, YYYY-MM-DD"),
    option("--traffic", type=int, default=265, show_default=True, help="Conversations per agent per day"),
    option("--customers", type=int, default=None, help="Distinct customers per agent [default: 4 × traffic]"),
    option("--duplicates", type=float, default=0.0, help="Share of events sent twice (at-least-once delivery)"),
    option("--bad", type=float, default=0.0, help="Share of events spoiled into bad input"),
    option("--disorder", type=float, default=0.0, help="Delay events by up to this many seconds (out of order)"),
    option("-o", "--output", default="-", help="Output file [default: stdout]"),
)
@one_line_errors
async def simulate(self, agents: int, days: int, seed: int, start: str, traffic: int, customers: int | None,
                   duplicates: float,
                   bad: float, disorder: float, output: str) -> None:
    """Generate a realistic shop's events as JSON lines, deterministic for a seed."""
    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise UsageError(f"--start: '{start}' is not a date YYYY-MM-DD") from None
    for name, value in (("--agents", agents), ("--days", days), ("--traffic", traffic),
                        ("--customers", customers or 1)):
        if value < 1:
            raise UsageError(f"{name}: must be at least 1, not {value}")
    for name, value in (("--duplicates", duplicates), ("--bad", bad)):
        if not 0 <= value <= 1:
            raise UsageError(f"{name}: must be a share between 0 and 1, not {value}")
    sim = Simulator(agents=agents, days=days, seed=seed, start=first, conversations_per_agent_day=traffic,
                    customers_per_agent=customers, timezone=SETTINGS.timezone, disorder_s=disorder, duplicate_rate=duplicates, bad_rate=bad)
    n = write_lines(sim, output, estimate=agents * days * traffic * 6.3)
    print(f"cspulse simulate: {n:,} events ({agents} agents, {days} days from {first}, seed {seed})"
          + (f" -> {output}" if output != "-" else ""), file=sys.stderr)


def write_lines(sim: Simulator, output: str, estimate: float) -> int:
    n = 0
    try:
        handle = sys.stdout.buffer if output == "-" else open(output, "wb")
    except OSError as e:
        raise InputError(f"-o: cannot write {output} ({e.strerror})") from None
    with Progress(TextColumn("simulate"), BarColumn(), TextColumn("{task.completed:,} events"),
                  console=views.console(stderr=True), transient=True) as bar:
        task = bar.add_task("simulate", total=estimate)
        for line in sim.lines():
            handle.write(line + b"\n")
            n += 1
            if n % 50_000 == 0:
                bar.update(task, completed=n)
    if handle is not sys.stdout.buffer:
        handle.close()
    else:
        handle.flush()
    return n


@embedded_command(
    option("--db", default="sqlite:///cspulse-demo.db", show_default=True, help="Database for the demo (recreated)"),
    option("--agents", type=int, default=8, show_default=True),
    option("--seed", type=int, default=7, show_default=True),
)
@one_line_errors
async def demo(self, db: str, agents: int, seed: int) -> None:
    """A simulated month of a small shop, end to end on the embedded defaults."""
    if db.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(db.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    events = Path("cspulse-demo.jsonl")
    out = views.console()
    sim = Simulator(agents=agents, days=30, seed=seed, start=date(2026, 11, 1), conversations_per_agent_day=80,
                    timezone=SETTINGS.timezone, duplicate_rate=0.002, bad_rate=0.001)
    n = write_lines(sim, str(events), estimate=agents * 30 * 80 * 6.3)
    out.print(f"[bold]1.[/bold] simulated {n:,} events of November 2026 for {agents} agents -> {events}")
    _, run, reasons, seconds = _replay_with_progress([str(events)], db, None)
    out.print(f"[bold]2.[/bold] replayed them into {db}")
    out.print(views.replay_summary(run, reasons, seconds))
    engine = repo.connect(db)
    with Session(engine) as session:
        rows = repo.read_kpis("2026-11", session=session)
    shop = rows.pop(SHOP)
    out.print("[bold]3.[/bold] the month's KPIs")
    out.print(views.kpi_table("2026-11", dict(sorted(rows.items())), shop))
    with Session(engine) as session:
        alerts = repo.read_alerts(session=session)
    out.print("[bold]4.[/bold] the month's alerts (SPEC §4 default rules)")
    out.print(views.alert_counts(alerts))
    out.print(views.alert_table(alerts, "latest alerts", SETTINGS.params().zone, limit=12))
    from cspulse.monthend import report as monthend_report
    from cspulse.monthend import service as monthend
    zone = SETTINGS.params().zone
    closed = monthend.close_month(engine, "2026-11", zone=zone, card=SETTINGS.scorecard, rules=SETTINGS.month_end,
                                  now=datetime.now(zone), issued_at=datetime(2026, 12, 2, 0, 30, tzinfo=zone))
    out.print("[bold]5.[/bold] the month-end close (SPEC §5), as the worker runs it at 00:30 on 2 December")
    out.print(views.close_table(closed.result, f"2026-11 close, revision {closed.revision}"))
    html = Path("cspulse-demo-report-2026-11.html")
    html.write_text(monthend_report.render_html(monthend_report.report_data(engine, "2026-11", zone, 0)),
                    encoding="utf-8")
    out.print(f"[bold]6.[/bold] the monthly report -> {html.resolve()} (open it in a browser, or mail it)")
    out.print(f"next: [cyan].venv/bin/cspulse kpis --period 2026-11 --agent agent-01 --db {db}[/cyan]  "
              f"(one agent, all KPIs, goals)\n"
              f"      [cyan].venv/bin/cspulse alerts --state firing --db {db}[/cyan]  (what still needs a supervisor)\n"
              f"      [cyan].venv/bin/cspulse explain 2026-11 --agent agent-01 --events {events} --db {db}[/cyan]  "
              "(how a total was made, down to the events)\n"
              f"      [cyan].venv/bin/cspulse report 2026-11 --format csv --db {db}[/cyan]  (the payroll file)\n"
              "live boards: `docker compose up`, then Grafana at http://localhost:3000 "
              "(dashboard \"cspulse\", Prometheus at http://localhost:9090)")
