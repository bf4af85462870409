"""The month-end decision (SPEC §5 steps 5–7), pure: standings in, the month's result out.

Consequences are found by the month-end rules (a port: `decide`, see
rules.engine.ConsequenceEngine) and made here, with stable identities
(`PERIOD/AGENT/KIND`): a reopened month's bonus is the same bonus, so a payroll
export keyed by it never pays twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Mapping
from zoneinfo import ZoneInfo

from .scoring import Standing


@dataclass
class Consequence:
    id: str
    period: str
    agent_id: str
    kind: str                   # bonus | deduction | improvement_plan | reassignment_recommendation
    rule: str
    amount: float | None        # CNY, for a bonus or a deduction
    due: str | None             # ISO-8601, for an improvement plan
    message: str
    evidence: dict

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class MonthResult:
    period: str
    issued_at: str                         # ISO-8601 in the shop's zone: when the report was issued
    standings: list[Standing]
    consequences: list[Consequence]
    notes: list[str] = field(default_factory=list)

    @property
    def ranked(self) -> int:
        return sum(1 for s in self.standings if s.rank is not None)

    def of(self, agent_id: str) -> list[Consequence]:
        return [c for c in self.consequences if c.agent_id == agent_id]

    def as_json(self) -> dict:
        """The close as SPEC §5 and `close-month --json` state it: per agent, rank and
        rank_from_bottom (null if unranked), every component, eligibility, consequences."""
        return {"period": self.period, "issued_at": self.issued_at, "ranked": self.ranked, "notes": self.notes,
                "agents": {s.agent_id: standing_json(s, self.of(s.agent_id)) for s in self.standings}}


def standing_json(s: Standing, consequences: list[Consequence]) -> dict:
    r4 = lambda x: None if x is None else round(x, 4)  # noqa: E731
    return {
        "rank": s.rank, "rank_from_bottom": s.rank_from_bottom, "total": s.total,
        "kpi_score": r4(s.kpi_score), "qa_score": r4(s.qa_score), "management_score": r4(s.management_score),
        "manager_component": r4(s.manager_component), "self_review": s.self_review,
        "manager_review": s.manager_review, "eligible": s.eligible, "reason": s.reason,
        "served_customers": s.served_customers, "missing_reviews": s.missing,
        "kpis": {p.kpi: {"value": p.value, "score": r4(p.score), "weight": p.weight} for p in s.kpi_parts},
        "consequences": [{"kind": c.kind, "amount": c.amount, "due": c.due, "id": c.id, "message": c.message}
                         for c in consequences],
    }


def missing_reviews(standings: list[Standing]) -> dict[str, list[str]]:
    """Eligible agents without a self or manager review: agent -> what is missing."""
    return {s.agent_id: s.missing for s in standings if s.missing}


def previous_months(period: str, n: int) -> list[str]:
    """The n calendar months before `period`, latest first."""
    y, m = int(period[:4]), int(period[5:7])
    out = []
    for _ in range(n):
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        out.append(f"{y:04d}-{m:02d}")
    return out


def last_streak(agent_id: str, period: str, history: dict[str, dict[str, dict]]) -> int:
    """Months in a row, ending with `period` (where the agent is last), in which the agent
    was ranked last; a month not closed, or where the agent was not ranked, ends it."""
    streak = 1
    for month in previous_months(period, 24):
        line = history.get(month, {}).get(agent_id)
        if not line or line.get("rank_from_bottom") != 1:
            break
        streak += 1
    return streak


def decide(period: str, standings: list[Standing], rules, history: Mapping[str, dict[str, dict]],
           issued_at: datetime, zone: ZoneInfo, fire: Callable[[list[dict]], list[tuple[str, str]]]) -> MonthResult:
    """Apply the month-end rules to the ranked agents.  `history`: earlier closed months,
    {period: {agent: {rank, rank_from_bottom, total, ranked}}} (read with `.get`, month by
    month back while a last place runs); `fire(facts)` says which rules matched which agent."""
    issued = issued_at.astimezone(zone)
    result = MonthResult(period, issued.isoformat(), standings, [])
    ranked = [s for s in standings if s.rank is not None]
    if any(s.missing for s in standings):
        result.notes.append("closed with reviews missing: " + "; ".join(
            f"{a}: {', '.join(m)}" for a, m in missing_reviews(standings).items()))
    if len(ranked) < rules.min_ranked:
        result.notes.append(f"{len(ranked)} agents ranked, fewer than {rules.min_ranked}: no consequences")
        return result
    facts = []
    for s in ranked:
        streak = last_streak(s.agent_id, period, history) if s.rank_from_bottom == 1 else 0
        facts.append({"agent_id": s.agent_id, "rank": s.rank, "rank_from_bottom": s.rank_from_bottom,
                      "ranked": len(ranked), "total": s.total, "kpi_score": s.kpi_score, "last_streak": streak})
    by_agent = {f["agent_id"]: f for f in facts}
    by_name = {r.name: r for r in rules.rules}
    for agent, name in fire(facts):
        rule, fact = by_name[name], by_agent[agent]
        evidence = {k: fact[k] for k in ("rank", "rank_from_bottom", "ranked", "total")}
        if rule.kind == "reassignment_recommendation":
            months = [period] + previous_months(period, fact["last_streak"] - 1)
            evidence["months"] = [{"period": period, **evidence}] + [
                {"period": m, **{k: history.get(m)[agent].get(k) for k in ("rank", "rank_from_bottom", "ranked", "total")}}
                for m in months[1:]]
        due = None
        if rule.due_after_s is not None:
            due = (issued + timedelta(seconds=rule.due_after_s)).isoformat()
        result.consequences.append(Consequence(
            f"{period}/{agent}/{rule.kind}", period, agent, rule.kind, rule.name, rule.amount, due,
            rule.render(fact), evidence))
    return result
