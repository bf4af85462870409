"""The tables: what later runs, commands and reports read back."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Column, Index, LargeBinary
from sqlmodel import Field, SQLModel

SHOP_ROW = ""  # agent_id of the shop-wide rows


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class KpiValue(SQLModel, table=True):
    """One KPI of one agent (or the shop, agent_id "") in one day or month."""

    __tablename__ = "kpi_value"
    period: str = Field(primary_key=True, max_length=10)
    agent_id: str = Field(primary_key=True, max_length=128)
    kpi: str = Field(primary_key=True, max_length=64)
    value: float | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class KpiSource(SQLModel, table=True):
    """Which counters the stored KPIs of one (agent or shop, period) were computed from: a
    digest of them, written with the KPIs by the worker (`repo.write_book_kpis`), so a
    store write recomputes and rewrites only what changed.  No row: unknown (written
    by a replay, or before this table): rewritten at the worker's next store write."""

    __tablename__ = "kpi_source"
    period: str = Field(primary_key=True, max_length=10)
    agent_id: str = Field(primary_key=True, max_length=128)
    digest: str = Field(max_length=32)


class GoalRow(SQLModel, table=True):
    """A target agreed for one KPI of an agent for a month (the latest goal_set)."""

    __tablename__ = "goal"
    period: str = Field(primary_key=True, max_length=7)
    agent_id: str = Field(primary_key=True, max_length=128)
    kpi: str = Field(primary_key=True, max_length=64)
    target: float
    reviewer: str
    event_id: str


class RejectedEvent(SQLModel, table=True):
    """A bad input kept with its reason (SPEC §2 dead letters); `digest` keeps one copy per input."""

    __tablename__ = "rejected_event"
    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(unique=True, max_length=64)
    received_at: datetime = Field(default_factory=utcnow)
    source: str
    event_id: str | None = None
    reason: str
    raw: str


class SeenEvent(SQLModel, table=True):
    """Every applied event id, so a duplicate older than the in-memory horizon is still known.
    The worker's ids also say which partition and which write-back of its state (`epoch`)
    they came with: ids of a write-back never committed are forgotten at a restore."""

    __tablename__ = "seen_event"
    __table_args__ = (Index("ix_seen_event_part_epoch", "part", "epoch"),)
    event_id: str = Field(primary_key=True, max_length=128)
    ts_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    part: int | None = None
    epoch: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class PartitionMonth(SQLModel, table=True):
    """The worker's counters of one Kafka partition in one month as of its last store
    write: JSON {"who|period": {counter: value}} (who "" is the shop), and a digest of
    that text, so a worker writes and reads again only the months that changed."""

    __tablename__ = "partition_month"
    partition: int = Field(primary_key=True)
    month: str = Field(primary_key=True, max_length=7)
    counters: str
    digest: str = Field(max_length=32)
    updated_at: datetime = Field(default_factory=utcnow)


class CoreState(SQLModel, table=True):
    """The pipeline's state, so that the next replay continues where this one stopped."""

    __tablename__ = "core_state"
    id: int = Field(default=1, primary_key=True)
    snapshot: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class ReplayRun(SQLModel, table=True):
    """One replay: what it read and what became of it."""

    __tablename__ = "replay_run"
    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime
    finished_at: datetime
    sources: str
    read: int
    applied: int
    duplicates: int
    rejected: int
    late: int


class AlertRow(SQLModel, table=True):
    """An alert (SPEC §4) by its key: the latest state of its latest firing."""

    __tablename__ = "alert"
    key: str = Field(primary_key=True, max_length=400)
    rule: str = Field(index=True, max_length=64)
    agent_id: str = Field(index=True, max_length=128)     # "" for the shop
    severity: str = Field(max_length=16)
    state: str = Field(index=True, max_length=16)
    fired_at_us: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    message: str
    data: str                                              # the whole alert, JSON
    updated_at: datetime = Field(default_factory=utcnow)


class ReviewRow(SQLModel, table=True):
    """The latest self review, manager review or improvement plan of an agent for a month."""

    __tablename__ = "review"
    period: str = Field(primary_key=True, max_length=7)
    agent_id: str = Field(primary_key=True, max_length=128)
    kind: str = Field(primary_key=True, max_length=16)        # self | manager | plan
    score: float | None = None
    reviewer: str | None = None
    note: str | None = None
    event_id: str
    ts_us: int = Field(sa_column=Column(BigInteger, nullable=False))


class MonthClose(SQLModel, table=True):
    """One revision of a month's close (SPEC §5); the newest is `current`. `result` holds
    the whole result and the inputs it was computed from (JSON), so it never changes."""

    __tablename__ = "month_close"
    period: str = Field(primary_key=True, max_length=7)
    revision: int = Field(primary_key=True)
    current: bool = Field(index=True)
    closed_at: str                                            # ISO-8601 with the shop's offset
    issued_at: str
    result: str
    changes: str = "[]"                                       # vs the previous revision (JSON list)
    published: bool = False                                   # its consequences sent to cs.consequences


class ConsequenceRow(SQLModel, table=True):
    """A consequence by its stable id (PERIOD/AGENT/KIND): a reopened month's bonus is the
    same row, so paying by id never pays twice; one a later revision drops is withdrawn."""

    __tablename__ = "consequence"
    id: str = Field(primary_key=True, max_length=200)
    period: str = Field(index=True, max_length=7)
    agent_id: str = Field(max_length=128)
    kind: str = Field(max_length=32)
    amount: float | None = None
    due: str | None = None
    rule: str
    message: str
    evidence: str                                             # JSON
    revision: int                                             # the latest revision that decided it
    state: str = Field(default="active", max_length=16)       # active | withdrawn
    updated_at: datetime = Field(default_factory=utcnow)


class PlanDecision(SQLModel, table=True):
    """A manager's verdict on a submitted improvement plan (accepted or rejected)."""

    __tablename__ = "plan_decision"
    period: str = Field(primary_key=True, max_length=7)
    agent_id: str = Field(primary_key=True, max_length=128)
    verdict: str = Field(max_length=16)
    by: str
    note: str | None = None
    decided_at: datetime = Field(default_factory=utcnow)


class Adjustment(SQLModel, table=True):
    """An event for a month already closed: applied to the live KPIs, never to the close."""

    __tablename__ = "adjustment"
    event_id: str = Field(primary_key=True, max_length=128)
    period: str = Field(index=True, max_length=7)
    type: str = Field(max_length=32)
    agent_id: str | None = None
    customer_id: str | None = None
    ts_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    recorded_at: datetime = Field(default_factory=utcnow)
