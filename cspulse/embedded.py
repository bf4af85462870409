"""Embedded mode: JSON-lines files through the pure core into the store, no Kafka.

This is the application service behind `cspulse replay` and `cspulse demo`;
it owns the order of things that must survive a crash: the event ids applied,
the rejected inputs and the core's state are saved in one transaction at each
checkpoint, so a replay stopped anywhere and run again loses no event and
counts none twice.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from cspulse.core import KpiBook, Params, Pipeline
from cspulse.core.desk import AgentDesk
from cspulse.monthend.service import plan_states
from rules.engine import RuleEngine
from rules.load import RuleSet
from rules.runner import AlertRunner
from store import repo
from store.models import ReplayRun

CHECKPOINT_EVERY = 200_000   # events between saves of ids + state (bounds memory and redo)


class InputError(Exception):
    """An input the user named cannot be read."""


@dataclass
class Source:
    name: str
    size: int | None       # bytes, when known (for progress)
    lines: Iterator[bytes]


def open_sources(paths: Iterable[str]) -> list[Source]:
    """Check every path before reading any (a typo should not cost half a replay)."""
    out = []
    for path in paths:
        if path == "-":
            out.append(Source("<stdin>", None, iter(sys.stdin.buffer)))
            continue
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{path}: no such file")
        try:
            handle = p.open("rb")
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror})") from None
        out.append(Source(path, p.stat().st_size, iter(handle)))
    return out


def load_pipeline(params: Params, *, session: Session) -> Pipeline:
    """The stored pipeline (to continue where the last replay stopped), or a fresh one."""
    pipeline = repo.load_state(session=session)
    if pipeline is None:
        return Pipeline(params)
    if pipeline.params != params:
        diff = ", ".join(f"{_SETTING.get(k, 'CSPULSE_' + k.upper())} {_shown(getattr(pipeline.params, k))} -> "
                         f"{_shown(getattr(params, k))}"
                         for k in params.__dataclass_fields__ if getattr(pipeline.params, k) != getattr(params, k))
        raise InputError(f"this database was built with other KPI settings ({diff}); "
                         "use a fresh --db or the same settings")
    return pipeline


# The setting behind each core parameter that is not simply CSPULSE_<NAME>
_SETTING = {"order_grace_days": "CSPULSE_CLOSE_DAY (days a month's orders are kept)",
            "wait_checks_s": "the alert rules' `after` of customer_waiting",
            "dedup_horizon_s": "the de-duplication horizon"}


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def replay(sources: list[Source], *, engine: Engine, params: Params, until: int | None = None,
           progress: Callable[[str, int, int], None] | None = None,
           rules: RuleSet | None = None) -> tuple[Pipeline, ReplayRun, Counter]:
    """Feed every source through the stored pipeline; store KPIs as of `until` (µs) or the last
    event, and the alerts of `rules` (continuing the stored ones: a key is stored once)."""
    started = datetime.now(timezone.utc)
    with Session(engine) as session:
        pipeline = load_pipeline(params, session=session)
        pipeline.closed_months = frozenset(repo.closed_months(session=session))
    before = (pipeline.stats.read, pipeline.stats.applied, pipeline.stats.duplicates,
              pipeline.stats.rejected_total, pipeline.stats.late)
    rejected_before = Counter(pipeline.stats.rejected)
    seen = repo.seen_lookup(engine)
    pipeline.seen_before = seen
    runner = None
    if rules is not None:
        runner = AlertRunner(pipeline, RuleEngine(rules, params))
        with Session(engine) as session:
            runner.engine.alerts.load(repo.read_alerts(session=session), rules)
    pipeline.track_ids = True
    rejects: list[tuple[str, str | None, str, str]] = []
    # The core builds no reference cycles, but its many long-lived objects make
    # the cyclic collector rescan the whole state again and again (a third of
    # the replay time on a month); reference counting frees everything anyway.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        since_checkpoint = 0
        for src in sources:
            done = 0
            for lineno, line in enumerate(src.lines, 1):
                done += len(line)
                if not line.strip():
                    continue
                rejected = pipeline.feed_line(line)
                if runner is not None:
                    runner.step()
                if rejected is not None:
                    rejects.append((f"{src.name}:{lineno}", rejected.event_id, rejected.reason,
                                    line.decode("utf-8", "replace").rstrip("\n")))
                since_checkpoint += 1
                if since_checkpoint >= CHECKPOINT_EVERY:
                    _checkpoint(pipeline, rejects, engine, runner)
                    since_checkpoint = 0
                if progress and lineno % 20_000 == 0:
                    progress(src.name, done, src.size or 0)
            if progress:
                progress(src.name, done, src.size or done)
        # The KPIs are a view "as of" `until`; with rules, the same view gives their last alerts.
        book = runner.finish(until) if runner is not None else pipeline.view(until)
        if runner is not None:
            _look_at_plans(pipeline, runner, engine, until)
        _checkpoint(pipeline, rejects, engine, runner)
    finally:
        seen.close()
        if gc_was_enabled:
            gc.enable()
    # The state goes on holding the last events for ordering, so the next replay
    # continues the stream exactly.
    s = pipeline.stats
    run = ReplayRun(started_at=started, finished_at=datetime.now(timezone.utc),
                    sources=", ".join(x.name for x in sources),
                    read=s.read - before[0], applied=s.applied - before[1], duplicates=s.duplicates - before[2],
                    rejected=s.rejected_total - before[3], late=s.late - before[4])
    with Session(engine) as session:
        store_results(book, pipeline.desk, session=session)
        repo.add_run(run, session=session)
        session.commit()
        session.refresh(run)
    return pipeline, run, pipeline.stats.rejected - rejected_before


def _look_at_plans(pipeline: Pipeline, runner: AlertRunner, engine: Engine, until: int | None) -> None:
    """The improvement plans closes required, as of the stream's time, to the rules
    (`improvement_plan_overdue`); the plans submitted in this replay count."""
    now = until if until is not None else pipeline.max_ts
    if now is None:
        return
    submitted = {(period, agent): (r.ts, r.note) for agent, f in pipeline.desk.agents.items()
                 for period, r in f.plans.items()}
    for plan in plan_states(engine, now, submitted=submitted):
        runner.engine.observe(plan.note(now))


def _checkpoint(pipeline: Pipeline, rejects: list, engine: Engine, runner: AlertRunner | None = None) -> None:
    with Session(engine) as session:
        if runner is not None:    # with the state they follow from, so a crash loses none
            book = runner.engine.alerts
            changed, retracted = book.changed_since(book.drain())
            repo.write_alerts(changed, session=session)
            repo.delete_alerts(retracted, session=session)
        repo.remember_ids(pipeline.drain_fresh_ids(), session=session)
        repo.add_adjustments(pipeline.post_close, session=session)
        pipeline.post_close.clear()
        repo.keep_rejected(rejects, session=session)
        repo.save_state(pipeline, session=session)
        session.commit()
    rejects.clear()


def store_results(book: KpiBook, desk: AgentDesk, *, session: Session) -> None:
    """Write every KPI of every (agent or shop, period), the goals and the reviews to the store."""
    repo.write_kpis(book.all_kpis(), session=session)
    repo.write_goals(repo.goal_rows(desk.agents), session=session)
    repo.write_reviews(repo.review_rows(desk.agents), session=session)

