"""Per-agent inputs that need no customer state: spot checks, reports, reviews,
goals and improvement plans (SPEC §2 reviews and feedback, §3.3).

Keyed by agent, so under Kafka it lives in the partition of the agent's key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import (Event, GoalSet, ImprovementPlanSubmitted, ManagerReview, QaCheck, ReportAudited,
                     ReportSubmitted, SelfReview)
from .facts import Fact
from .shopclock import ShopClock, to_us


def milli(score: float) -> int:
    """A score in thousandths, so that sums of scores are exact whatever their order."""
    return round(score * 1000)


@dataclass(slots=True)
class Review:
    ts: int
    score: float
    reviewer: str | None
    note: str | None
    event_id: str


@dataclass(slots=True)
class Goal:
    ts: int
    target: float
    reviewer: str
    event_id: str


@dataclass(slots=True)
class Submission:
    ts: int
    due_ts: int
    due_day: str


@dataclass(slots=True)
class Audit:
    ts: int
    period: str
    truthful: bool
    quality: int


@dataclass(slots=True)
class AgentFile:
    reports: dict[str, Submission] = field(default_factory=dict)    # report_id -> first submission
    audits: dict[str, Audit] = field(default_factory=dict)          # report_id -> latest audit
    self_reviews: dict[str, Review] = field(default_factory=dict)     # period -> latest
    manager_reviews: dict[str, Review] = field(default_factory=dict)
    goals: dict[tuple[str, str], Goal] = field(default_factory=dict)   # (period, kpi) -> latest
    plans: dict[str, Review] = field(default_factory=dict)             # period -> submission
    recent_ids: dict[str, int] = field(default_factory=dict)          # event_id -> ts, dedup horizon


class AgentDesk:
    """What each agent's reviews, reports and spot checks add up to.

    Order-independent by construction (sums; the first submission and the
    latest audit, review or goal by event time), so it needs no reordering.
    """

    def __init__(self, clock: ShopClock) -> None:
        self.clock = clock
        self.agents: dict[str, AgentFile] = {}
        self.changed: set[str] | None = None   # agents touched, when tracked

    def __getstate__(self):
        return {"agents": self.agents}

    def __setstate__(self, state):
        self.agents = state["agents"]
        self.clock = None  # set by the owner after loading
        self.changed = None

    def file(self, agent_id: str) -> AgentFile:
        f = self.agents.get(agent_id)
        if f is None:
            f = self.agents[agent_id] = AgentFile()
        return f

    def apply(self, e: Event, ts: int) -> list[Fact]:
        """Apply one agent-keyed event at `ts` (µs); return its facts."""
        kind, agent = type(e), e.agent_id
        if kind is QaCheck:
            day = self.clock.day(ts)
            return [(agent, day, "qa_checks", 1), (agent, day, "qa_milli", milli(e.score))]
        f = self.file(agent)
        if kind is ReportSubmitted:
            return self._submitted(agent, f, e.report_id, Submission(ts, to_us(e.due), self.clock.day(to_us(e.due))))
        if kind is ReportAudited:
            old = f.audits.get(e.report_id)
            if old is not None and ts < old.ts:
                return []   # an older verdict than the one we have
            sub = f.reports.get(e.report_id)
            # An audit counts where its report does (the month of its due), else on its own day.
            new = Audit(ts, sub.due_day if sub else self.clock.day(ts), e.truthful, milli(e.quality))
            f.audits[e.report_id] = new
            return (_audit_facts(agent, old, -1) if old else []) + _audit_facts(agent, new, 1)
        if kind in (SelfReview, ManagerReview, ImprovementPlanSubmitted):
            book = {SelfReview: f.self_reviews, ManagerReview: f.manager_reviews,
                    ImprovementPlanSubmitted: f.plans}[kind]
            old = book.get(e.period)
            if old is None or ts >= old.ts:  # the latest statement for a period stands
                score = getattr(e, "score", 0.0)
                book[e.period] = Review(ts, score, getattr(e, "reviewer", None),
                                        getattr(e, "note", None) or getattr(e, "text", None), e.event_id)
            return []
        if kind is GoalSet:
            old = f.goals.get((e.period, e.kpi))
            if old is None or ts >= old.ts:
                f.goals[(e.period, e.kpi)] = Goal(ts, e.target, e.reviewer, e.event_id)
            return []
        raise TypeError(f"not an agent event: {kind.__name__}")

    def _submitted(self, agent: str, f: AgentFile, report_id: str, new: Submission) -> list[Fact]:
        old = f.reports.get(report_id)
        if old is not None and old.ts <= new.ts:
            return []   # a resubmission: timeliness is judged on the first
        out = _submission_facts(agent, old, -1) if old else []
        f.reports[report_id] = new
        out += _submission_facts(agent, new, 1)
        audit = f.audits.get(report_id)
        if audit is not None and audit.period != new.due_day:   # the audit was read first: move it
            out += _audit_facts(agent, audit, -1)
            audit.period = new.due_day
            out += _audit_facts(agent, audit, 1)
        return out

    def prune_ids(self, oldest: int) -> None:
        for f in self.agents.values():
            if f.recent_ids and any(t < oldest for t in f.recent_ids.values()):
                f.recent_ids = {k: t for k, t in f.recent_ids.items() if t >= oldest}

    def goals(self, period: str) -> dict[str, dict[str, float]]:
        """Targets agreed for `period` (a month; a day shows its month's goals): agent -> kpi -> target."""
        month = period[:7]
        out: dict[str, dict[str, float]] = {}
        for agent, f in self.agents.items():
            for (p, kpi), goal in f.goals.items():
                if p == month:
                    out.setdefault(agent, {})[kpi] = goal.target
        return out


def _submission_facts(agent: str, sub: Submission, sign: int) -> list[Fact]:
    out = [(agent, sub.due_day, "reports_submitted", sign)]
    if sub.ts <= sub.due_ts:
        out.append((agent, sub.due_day, "reports_on_time", sign))
    return out


def _audit_facts(agent: str, audit: Audit, sign: int) -> list[Fact]:
    out = [(agent, audit.period, "reports_audited", sign),
           (agent, audit.period, "report_quality_milli", sign * audit.quality)]
    if audit.truthful:
        out.append((agent, audit.period, "reports_truthful", sign))
    return out
