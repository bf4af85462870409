"""Small, boring functions over the tables; each takes the session or engine it works on."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec
from alembic.util import CommandError
from sqlalchemy import delete, false, or_, text, tuple_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine, select

from cspulse.core import KPIS, KpiBook
from store import migrate
from store.models import (SHOP_ROW, Adjustment, AlertRow, ConsequenceRow, CoreState, GoalRow, KpiSource, KpiValue,
                          MonthClose, PartitionMonth, PlanDecision, RejectedEvent, ReplayRun, ReviewRow, utcnow)

_CHUNK = 5000


class MissingDatabase(Exception):
    """A command that only reads was pointed at a database that does not exist."""


def connect(url: str, *, must_exist: bool = False) -> Engine:
    """An engine for `url` with the schema in place (`must_exist`: refuse to create a SQLite file)."""
    engine = create_engine(url)
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if must_exist and path and path != ":memory:" and not Path(path).exists():
        raise MissingDatabase(f"{url}: no such database; fill one with `cspulse replay FILE --db {url}`")
    if engine.dialect.name == "sqlite":
        with engine.connect() as c:
            c.exec_driver_sql("PRAGMA journal_mode=WAL")
    for attempt in range(50):
        try:
            if migrate.current(engine) != migrate.head():
                migrate.upgrade(engine)
            break
        except (DBAPIError, CommandError) as e:   # another process is migrating at the same moment: look again
            if not any(s in str(e) for s in _RACES) or attempt == 49:
                raise
            time.sleep(0.1)
    return engine


# What a concurrent migration looks like to the loser (SQLite, PostgreSQL; the last is
# Alembic planning from a revision the other process has just moved past: seen once
# when a test read the store while a restarted worker was migrating it)
_RACES = ("already exists", "locked", "duplicate key", "UniqueViolation", "could not serialize",
          "overlaps with other requested revisions")


def _insert(session: Session):
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL, SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _insert_ignoring_duplicates(session: Session, table, rows: list[dict]) -> None:
    stmt = _insert(session)(table).on_conflict_do_nothing()
    for i in range(0, len(rows), _CHUNK):
        session.execute(stmt, rows[i:i + _CHUNK])


# -- core state and dedup -------------------------------------------------------

def load_state(*, session: Session):
    """The saved pipeline, or None."""
    row = session.get(CoreState, 1)
    return pickle.loads(row.snapshot) if row else None


def save_state(pipeline, *, session: Session) -> None:
    """Save the pipeline, replacing the previous snapshot.

    Pickled without the memo ("fast" mode): the memo of a month's state holds a
    million entries (~100 MB at peak) to share references the state does not
    have; without it the peak is the output itself (~20 MB). The state has no
    cycles, and fast mode raises rather than loop if one ever appears.
    """
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(pipeline)
    table = CoreState.__table__
    values = {"snapshot": buffer.getvalue(), "updated_at": utcnow()}
    if session.execute(update(table).where(table.c.id == 1).values(**values)).rowcount == 0:
        session.execute(table.insert().values(id=1, **values))


def remember_ids(ids: dict[str, int], *, session: Session, partition: int | None = None,
                 epoch: int | None = None) -> None:
    """Record applied event ids (event_id -> ts_us); the worker's with their partition and
    `epoch`, the write-back of the partition's state they came with (`forget_ids_after`),
    given once for all in the statement (integers), so no row is built per id.  About a
    million a month: the driver's own executemany on the dict's pairs, twice as fast as
    going through SQLAlchemy's statement layer."""
    if not ids:
        return
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    columns, values = "event_id, ts_us", f"{mark}, {mark}"
    if partition is not None:
        columns, values = f"{columns}, part, epoch", f"{values}, {int(partition)}, {int(epoch)}"
    sql = f"INSERT INTO seen_event ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING"
    rows = list(ids.items())
    for i in range(0, len(rows), 50_000):
        conn.exec_driver_sql(sql, rows[i:i + 50_000])


def forget_ids_after(partition: int, epoch: int, *, session: Session) -> int:
    """Forget a partition's ids stored with write-backs after `epoch`, the last its
    committed state includes: their events are read again.  Returns how many."""
    return session.execute(text("DELETE FROM seen_event WHERE part = :p AND epoch > :e"),
                           {"p": partition, "e": epoch}).rowcount


def seen_lookup(engine: Engine):
    """A `seen_before(event_id)` port for the pipeline, on one open connection in autocommit
    mode (no transaction left open between lookups: 55 µs a lookup, against 122 through a
    connection taken from the pool each time)."""
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    query = text("SELECT 1 FROM seen_event WHERE event_id = :i")

    def seen_before(event_id: str) -> bool:
        return conn.execute(query, {"i": event_id}).first() is not None

    seen_before.close = conn.close
    return seen_before


# -- rejected events --------------------------------------------------------------

def keep_rejected(items: Iterable[tuple[str, str | None, str, str]], *, session: Session) -> None:
    """Keep (source, event_id, reason, raw) rejections, once per distinct input."""
    rows = [{"digest": hashlib.sha256(raw.encode()).hexdigest(), "received_at": utcnow(), "source": source,
             "event_id": event_id, "reason": reason, "raw": raw} for source, event_id, reason, raw in items]
    if rows:
        _insert_ignoring_duplicates(session, RejectedEvent.__table__, rows)


def rejected(*, session: Session, limit: int = 100) -> list[RejectedEvent]:
    return list(session.exec(select(RejectedEvent).order_by(RejectedEvent.id).limit(limit)))


# -- KPI values -------------------------------------------------------------------

def write_kpis(values: dict[tuple[str | None, str], dict[str, float | None]], *, session: Session,
               sources: dict[tuple[str | None, str], str] | None = None) -> None:
    """Replace the stored KPIs of every (who, period) given; who None is the shop.  With
    `sources`, the digests of the counters they were computed from (`write_book_kpis`);
    without, those keys' digests are dropped (unknown: the worker rewrites them)."""
    now = utcnow()
    rows = [{"period": period, "agent_id": SHOP_ROW if who is None else who, "kpi": k, "value": v,
             "updated_at": now}
            for (who, period), kpis in values.items() for k, v in kpis.items()]
    keys = [(period, SHOP_ROW if who is None else who) for who, period in values]
    _delete_keys(session, keys)
    for i in range(0, len(rows), _CHUNK):
        session.execute(KpiValue.__table__.insert(), rows[i:i + _CHUNK])
    if sources:
        session.execute(KpiSource.__table__.insert(), [
            {"period": period, "agent_id": SHOP_ROW if who is None else who, "digest": digest}
            for (who, period), digest in sources.items()])


def _delete_keys(session: Session, keys: list[tuple[str, str]]) -> None:
    """Delete the KPIs and their digests of these (period, agent_id) keys."""
    for table in (KpiValue.__table__, KpiSource.__table__):
        for i in range(0, len(keys), 400):
            session.execute(delete(table).where(tuple_(table.c.period, table.c.agent_id).in_(keys[i:i + 400])))


def text_digest(text: str) -> str:
    """The digest the store keeps of what it holds (`KpiSource`, `PartitionMonth`; the
    migration 0004 computes it too)."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def counters_digest(counters: dict[str, int]) -> str:
    """A digest of one bucket of counters (its names and values, in any order)."""
    return text_digest(json.dumps(sorted(counters.items())))


def one_writer_at_a_time(session: Session) -> None:
    """Hold other workers' store writes off until this transaction ends (PostgreSQL: a
    transaction-level advisory lock; SQLite has one writer anyway, and a write whose reads
    another writer overtook fails and is retried).  Each worker recomputes only the months
    it sees changed (`write_book_kpis`); two writes interleaved under READ COMMITTED could
    each miss the other's months and the last to commit leave KPIs of an older book."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _STORE_WRITE_LOCK})


_STORE_WRITE_LOCK = 0x637370756C7365    # "cspulse"


def write_book_kpis(book, *, session: Session, months: set[str] | None = None) -> int:
    """Bring the stored KPIs in line with a book (`KpiBook`, every partition's summed):
    recompute and rewrite only the (who, period) whose counters differ from those the
    stored KPIs were computed from (`KpiSource`), and delete those whose counters are
    gone (taken back to nothing); return how many were written or deleted.  With `months`,
    the book holds those months' counters only, and only their KPIs are looked at.

    Rewriting every period's KPIs at each store write cost the worker a time growing
    with its history: 0.9 s of CPU every 10 s after 75 days of 20 agents (52,416 rows
    deleted and inserted), 30-40% of one core after a year.  The digests say what the
    store holds whoever wrote it, so workers writing the same store one after another
    still leave the KPIs of the latest books."""
    q = select(KpiSource.period, KpiSource.agent_id, KpiSource.digest)
    if months is not None:      # "YYYY-MM" and its days "YYYY-MM-DD": a range of the key each
        q = q.where(or_(false(), *((KpiSource.period >= m) & (KpiSource.period < m + "~") for m in months)))
    stored = {(None if agent == SHOP_ROW else agent, period): digest for period, agent, digest in session.execute(q)}
    counters = book.counters
    digests = {key: counters_digest(c) for key, c in counters.items()}
    changed = {key: d for key, d in digests.items() if stored.get(key) != d}
    write_kpis({key: book.kpis(*key) for key in changed}, session=session, sources=changed)
    gone = [(period, SHOP_ROW if who is None else who) for who, period in stored if (who, period) not in digests]
    _delete_keys(session, gone)
    return len(changed) + len(gone)


def read_kpis(period: str, *, session: Session, agent_id: str | None = None) -> dict[str | None, dict]:
    """{agent_id or None for the shop: {kpi: value}} for one period, counts as integers."""
    table = KpiValue.__table__     # plain rows, not ORM objects: a month of 2,000 agents is 64,000 of them
    q = select(table.c.agent_id, table.c.kpi, table.c.value).where(table.c.period == period)
    if agent_id is not None:
        q = q.where(table.c.agent_id.in_([agent_id, SHOP_ROW]))
    out: dict[str | None, dict] = {}
    for who, kpi, value in session.execute(q):
        if value is not None and KPIS[kpi][0] == "count":
            value = int(value)
        out.setdefault(None if who == SHOP_ROW else who, {})[kpi] = value
    order = list(KPIS)
    return {who: {k: kv[k] for k in order if k in kv} for who, kv in out.items()}


def goal_rows(agent_files) -> list[GoalRow]:
    """The goals held in the core's agent files ({agent_id: AgentFile}) as rows."""
    return [GoalRow(period=period, agent_id=agent, kpi=kpi, target=g.target, reviewer=g.reviewer,
                    event_id=g.event_id)
            for agent, f in agent_files.items() for (period, kpi), g in f.goals.items()]


def write_goals(goals: Iterable[GoalRow], *, session: Session) -> None:
    for goal in goals:
        session.merge(goal)


def write_partition_months(views: dict[int, dict[str, dict]], *, session: Session) -> None:
    """Write partitions' months, {partition: {month: {"who|period": counters}}}, where the
    store holds other counters (its digest differs)."""
    if not views:
        return
    table = PartitionMonth.__table__
    stored = {(p, m): d for p, m, d in session.execute(
        select(table.c.partition, table.c.month, table.c.digest).where(table.c.partition.in_(list(views))))}
    for partition, months in views.items():
        for month, counters in months.items():
            text = json.dumps(counters, sort_keys=True)
            digest = text_digest(text)
            if stored.get((partition, month)) != digest:
                session.merge(PartitionMonth(partition=partition, month=month, counters=text, digest=digest,
                                             updated_at=utcnow()))


def partition_months(known: dict[tuple[int, str], str], *, session: Session
                     ) -> dict[tuple[int, str], tuple[str, dict[tuple[str | None, str], dict[str, int]]]]:
    """The partition months whose digest differs from `known` ((partition, month) -> digest,
    what the caller read before): {(partition, month): (digest, {(who, period): counters})}."""
    table = PartitionMonth.__table__
    digests = {(p, m): d for p, m, d in session.execute(select(table.c.partition, table.c.month, table.c.digest))}
    wanted = [key for key, d in digests.items() if known.get(key) != d]
    out = {}
    for i in range(0, len(wanted), 400):
        rows = session.execute(select(table.c.partition, table.c.month, table.c.counters, table.c.digest).where(
            tuple_(table.c.partition, table.c.month).in_(wanted[i:i + 400])))
        for p, m, written, digest in rows:
            buckets = {}
            for key, counters in json.loads(written).items():
                who, period = key.split("|", 1)
                buckets[(who or None, period)] = counters
            out[(p, m)] = (digest, buckets)
    return out


def store_partition_books(views: dict[int, dict[str, dict]], known: dict[tuple[int, str], tuple[str, dict]], *,
                          session: Session) -> dict[tuple[int, str], tuple[str, dict]]:
    """A worker's store write of books: its partitions' months (`views`) where they changed,
    then every partition's months that changed since `known` (what the worker read before,
    (partition, month) -> (digest, buckets)) read again, and the KPIs of those months
    recomputed from all partitions and rewritten where their counters changed.  Returns
    the months read, for the caller's `known` once the transaction has committed."""
    write_partition_months(views, session=session)
    fresh = partition_months({key: d for key, (d, _) in known.items()}, session=session)
    months = {m for _, m in fresh}
    book = KpiBook()
    for key, (_, buckets) in (known | fresh).items():
        if key[1] in months:
            book.add_buckets(buckets)
    write_book_kpis(book, session=session, months=months)
    return fresh


def add_run(run: ReplayRun, *, session: Session) -> None:
    session.add(run)


def runs(*, session: Session) -> list[ReplayRun]:
    return list(session.exec(select(ReplayRun).order_by(ReplayRun.id)))


def read_goals(month: str, *, session: Session) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for g in session.exec(select(GoalRow).where(GoalRow.period == month)):
        out.setdefault(g.agent_id, {})[g.kpi] = g.target
    return out


# -- alerts -----------------------------------------------------------------------

_alert_json = msgspec.json.Encoder().encode     # an alert record: 0.7 µs, json.dumps 6.5 µs


def write_alerts(alerts, *, session: Session) -> None:
    """Upsert alerts (rules.alerts.Alert) by key: a key is stored once, however often it fired.

    One multi-row INSERT … ON CONFLICT DO UPDATE per chunk (the worker stores thousands
    at a time after a backlog; `Session.merge` read each key first, in the store
    thread, holding the interpreter's lock the event loop needs)."""
    now = utcnow()
    rows = {a.key: {"key": a.key, "rule": a.rule, "agent_id": a.agent_id or SHOP_ROW, "severity": a.severity,
                    "state": a.state, "fired_at_us": a.fired_at, "message": a.message,
                    "data": _alert_json(a.as_record()).decode(), "updated_at": now} for a in alerts}
    if not rows:
        return
    table = AlertRow.__table__
    stmt = _insert(session)(table)
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.key],
                                      set_={c.name: stmt.excluded[c.name] for c in table.c if c.name != "key"})
    values = list(rows.values())
    for i in range(0, len(values), _CHUNK):
        session.execute(stmt, values[i:i + _CHUNK])


def delete_alerts(keys: list[str], *, session: Session) -> None:
    """Forget retracted alerts (false alarms: fired ahead, undone by an event that arrived late)."""
    for i in range(0, len(keys), 400):
        session.execute(delete(AlertRow.__table__).where(AlertRow.__table__.c.key.in_(keys[i:i + 400])))


def read_alerts(*, session: Session, state: str | None = None, agent_id: str | None = None):
    """Stored alerts (rules.alerts.Alert), oldest firing first."""
    from rules.alerts import Alert
    q = select(AlertRow).order_by(AlertRow.fired_at_us, AlertRow.key)
    if state is not None:
        q = q.where(AlertRow.state == state)
    if agent_id is not None:
        q = q.where(AlertRow.agent_id == agent_id)
    return [Alert(**json.loads(row.data)) for row in session.exec(q)]


# -- reviews and the month-end close ---------------------------------------------

def review_rows(agent_files) -> list[dict]:
    """The reviews and plan submissions held in the core's agent files as rows."""
    out = []
    for agent, f in agent_files.items():
        for kind, book in (("self", f.self_reviews), ("manager", f.manager_reviews), ("plan", f.plans)):
            for period, r in book.items():
                out.append({"period": period, "agent_id": agent, "kind": kind,
                            "score": None if kind == "plan" else r.score, "reviewer": r.reviewer,
                            "note": r.note, "event_id": r.event_id, "ts_us": r.ts})
    return out


def write_reviews(rows: list[dict], *, session: Session) -> None:
    for row in rows:
        session.merge(ReviewRow(**row))


def read_reviews(period: str, *, session: Session) -> dict[str, dict[str, dict]]:
    """{agent: {"self" | "manager" | "plan": {score, reviewer, note, event_id, ts_us}}} for a month."""
    out: dict[str, dict[str, dict]] = {}
    for r in session.exec(select(ReviewRow).where(ReviewRow.period == period)):
        out.setdefault(r.agent_id, {})[r.kind] = {"score": r.score, "reviewer": r.reviewer, "note": r.note,
                                                  "event_id": r.event_id, "ts_us": r.ts_us}
    return out


def current_close(period: str, *, session: Session) -> MonthClose | None:
    return session.exec(select(MonthClose).where(MonthClose.period == period, MonthClose.current)).first()


def closes(period: str, *, session: Session) -> list[MonthClose]:
    """Every revision of a month's close, oldest first."""
    return list(session.exec(select(MonthClose).where(MonthClose.period == period).order_by(MonthClose.revision)))


def closed_months(*, session: Session) -> set[str]:
    return set(session.exec(select(MonthClose.period).where(MonthClose.current)))


def close_lines(period: str, *, session: Session) -> dict[str, dict]:
    """{agent: {rank, rank_from_bottom, total, ranked}} of a closed month's current revision ({} if open)."""
    row = current_close(period, session=session)
    if row is None:
        return {}
    result = json.loads(row.result)
    return {a: {"rank": x["rank"], "rank_from_bottom": x["rank_from_bottom"], "total": x["total"],
                "ranked": result["ranked"]} for a, x in result["agents"].items()}


def add_close(period: str, body: dict, changes: list[str], now, *, session: Session) -> MonthClose:
    """Store a new revision of the month's close and make it the current one."""
    table = MonthClose.__table__
    last = session.exec(select(MonthClose.revision).where(MonthClose.period == period)
                        .order_by(MonthClose.revision.desc())).first()
    session.execute(update(table).where(table.c.period == period).values(current=False))
    row = MonthClose(period=period, revision=(last or 0) + 1, current=True, closed_at=now.isoformat(),
                     issued_at=body["issued_at"], result=json.dumps(body, ensure_ascii=False),
                     changes=json.dumps(changes, ensure_ascii=False))
    session.add(row)
    session.flush()
    return row


def unpublished_closes(*, session: Session) -> list[MonthClose]:
    """Closes (by the worker or `close-month`) whose consequences are not on Kafka yet."""
    return list(session.exec(select(MonthClose).where(MonthClose.published == False)  # noqa: E712
                             .order_by(MonthClose.period, MonthClose.revision)))


def mark_published(period: str, revision: int, *, session: Session) -> None:
    table = MonthClose.__table__
    session.execute(update(table).where(table.c.period == period, table.c.revision == revision)
                    .values(published=True))


def write_consequences(consequences, revision: int, *, session: Session) -> None:
    """Upsert a revision's consequences by id; the period's others are withdrawn."""
    periods = {c.period for c in consequences}
    ids = {c.id for c in consequences}
    for c in consequences:
        session.merge(ConsequenceRow(id=c.id, period=c.period, agent_id=c.agent_id, kind=c.kind, amount=c.amount,
                                     due=c.due, rule=c.rule, message=c.message,
                                     evidence=json.dumps(c.evidence, ensure_ascii=False), revision=revision,
                                     state="active", updated_at=utcnow()))
    for period in periods:
        for row in session.exec(select(ConsequenceRow).where(ConsequenceRow.period == period)):
            if row.id not in ids and row.state == "active":
                row.state, row.updated_at = "withdrawn", utcnow()
                session.add(row)


def read_consequences(period: str, *, session: Session, state: str | None = "active") -> list[ConsequenceRow]:
    q = select(ConsequenceRow).where(ConsequenceRow.period == period).order_by(ConsequenceRow.id)
    if state is not None:
        q = q.where(ConsequenceRow.state == state)
    return list(session.exec(q))


def decide_plan(period: str, agent_id: str, verdict: str, by: str, note: str | None, *, session: Session) -> None:
    session.merge(PlanDecision(period=period, agent_id=agent_id, verdict=verdict, by=by, note=note,
                               decided_at=utcnow()))


def plan_decisions(*, session: Session) -> dict[tuple[str, str], PlanDecision]:
    return {(d.period, d.agent_id): d for d in session.exec(select(PlanDecision))}


def required_plans(*, session: Session, period: str | None = None) -> list[ConsequenceRow]:
    q = select(ConsequenceRow).where(ConsequenceRow.kind == "improvement_plan", ConsequenceRow.state == "active")
    if period is not None:
        q = q.where(ConsequenceRow.period == period)
    return list(session.exec(q.order_by(ConsequenceRow.period, ConsequenceRow.agent_id)))


def plan_submissions(*, session: Session) -> dict[tuple[str, str], ReviewRow]:
    return {(r.period, r.agent_id): r for r in session.exec(select(ReviewRow).where(ReviewRow.kind == "plan"))}


def add_adjustments(rows: list[dict], *, session: Session) -> None:
    if rows:
        _insert_ignoring_duplicates(session, Adjustment.__table__, rows)


def read_adjustments(period: str, *, session: Session) -> list[Adjustment]:
    return list(session.exec(select(Adjustment).where(Adjustment.period == period).order_by(Adjustment.ts_us)))
