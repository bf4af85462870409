"""Per-agent inputs that need no customer state: ratings, spot checks, reports,
reviews, goals and improvement plans (SPEC §2 reviews and feedback, §3.3).

Keyed by agent, so under Kafka it lives in the partition of the agent's key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import (Event, GoalSet, ImprovementPlanSubmitted, ManagerReview, QaCheck, Rating, ReportAudited,
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
class AgentFile:
    reports_due: dict[str, str] = field(default_factory=dict)         # report_id -> day of its due
    audits: dict[str, tuple[str, bool, int]] = field(default_factory=dict)  # report_id -> (period, truthful, quality)
    self_reviews: dict[str, Review] = field(default_factory=dict)     # period -> latest
    manager_reviews: dict[str, Review] = field(default_factory=dict)
    goals: dict[tuple[str, str], Goal] = field(default_factory=dict)   # (period, kpi) -> latest
    plans: dict[str, Review] = field(default_factory=dict)             # period -> submission


class AgentDesk:
    """What each agent's reviews, reports and spot checks add up to."""

    def __init__(self, clock: ShopClock) -> None:
        self.clock = clock
        self.agents: dict[str, AgentFile] = {}

    def __getstate__(self):
        return {"agents": self.agents}

    def __setstate__(self, state):
        self.agents = state["agents"]
        self.clock = None  # set by the owner after loading

    def file(self, agent_id: str) -> AgentFile:
        f = self.agents.get(agent_id)
        if f is None:
            f = self.agents[agent_id] = AgentFile()
        return f

    def apply(self, e: Event, ts: int) -> list[Fact]:
        """Apply one agent-keyed event at `ts` (µs); return its facts."""
        kind, agent = type(e), e.agent_id
        day = self.clock.day(ts)
        if kind is Rating:
            return [(agent, day, "ratings", 1), (agent, day, "rating_sum", e.score)]
        if kind is QaCheck:
            return [(agent, day, "qa_checks", 1), (agent, day, "qa_milli", milli(e.score))]
        f = self.file(agent)
        if kind is ReportSubmitted:
            if e.report_id in f.reports_due:
                return []  # a resubmission: timeliness is judged on the first
            due_ts = to_us(e.due)
            due_day = self.clock.day(due_ts)
            f.reports_due[e.report_id] = due_day
            out = [(agent, due_day, "reports_submitted", 1)]
            if ts <= due_ts:
                out.append((agent, due_day, "reports_on_time", 1))
            return out
        if kind is ReportAudited:
            # An audit counts where its report does (the month of its due), else on its own day.
            out = []
            old = f.audits.get(e.report_id)
            if old is not None:  # a re-audit replaces the earlier verdict
                out += _audit_facts(agent, *old, sign=-1)
            new = (f.reports_due.get(e.report_id, day), e.truthful, milli(e.quality))
            f.audits[e.report_id] = new
            return out + _audit_facts(agent, *new, sign=1)
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

    def goals(self, period: str) -> dict[str, dict[str, float]]:
        """Targets agreed for `period` (a month; a day shows its month's goals): agent -> kpi -> target."""
        month = period[:7]
        out: dict[str, dict[str, float]] = {}
        for agent, f in self.agents.items():
            for (p, kpi), goal in f.goals.items():
                if p == month:
                    out.setdefault(agent, {})[kpi] = goal.target
        return out


def _audit_facts(agent: str, period: str, truthful: bool, quality: int, sign: int) -> list[Fact]:
    out = [(agent, period, "reports_audited", sign), (agent, period, "report_quality_milli", sign * quality)]
    if truthful:
        out.append((agent, period, "reports_truthful", sign))
    return out
