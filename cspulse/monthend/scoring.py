"""The month-end arithmetic of SPEC §5, steps 1–6: scores, components, total,
eligibility and ranking.  Pure: month KPIs and reviews in, standings out.

Money is decided on the rounded total, so the rounding is stated: a total is
first cleared of float noise (rounded to 9 places), then rounded half up to 2
decimals.  Components keep full precision until then.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class KpiScale:
    """How one KPI scores: linear from `worst` (0) to `best` (100), clamped; or, with
    `relative`, value / the team's maximum × 100."""

    kpi: str
    weight: float
    worst: float | None = None
    best: float | None = None
    relative: bool = False


@dataclass(frozen=True)
class Scorecard:
    kpis: tuple[KpiScale, ...]
    self_weight: float = 30
    manager_weight: float = 70
    # inside the manager's part
    kpi_weight: float = 60
    qa_weight: float = 10
    management_weight: float = 10
    manager_review_weight: float = 20
    min_served_customers: int = 30
    source: str = "default"


@dataclass(frozen=True)
class AgentMonth:
    """What the close knows of one agent for the month."""

    agent_id: str
    kpis: dict                          # SPEC §3 name -> value (None: no data)
    self_review: float | None = None
    manager_review: float | None = None


@dataclass
class KpiPart:
    kpi: str
    value: float | None
    score: float | None                 # None: no data, left out
    weight: float
    how: str                            # the arithmetic, for `explain`


@dataclass
class Standing:
    agent_id: str
    eligible: bool
    reason: str
    served_customers: int
    kpi_score: float | None
    kpi_parts: list[KpiPart]
    qa_score: float | None
    management_score: float | None
    manager_component: float | None
    self_review: float | None
    manager_review: float | None
    total: float | None                 # rounded to 2 decimals
    missing: list[str] = field(default_factory=list)   # reviews an eligible agent lacks
    rank: int | None = None
    rank_from_bottom: int | None = None


def linear_score(value: float, worst: float, best: float) -> float:
    """100 × (value − worst) / (best − worst), clamped to [0, 100]."""
    return min(100.0, max(0.0, 100 * (value - worst) / (best - worst)))


def weighted_mean(parts: list[tuple[float | None, float]]) -> float | None:
    """Σ w·x / Σ w over the parts present (x not None); None if none is."""
    present = [(x, w) for x, w in parts if x is not None and w > 0]
    total_w = sum(w for _, w in present)
    if not present or total_w == 0:
        return None
    return sum(x * w for x, w in present) / total_w


def round_money(x: float | None) -> float | None:
    """Half up to 2 decimals, after clearing float noise (72.345000000001 -> 72.35, not 72.34)."""
    if x is None:
        return None
    return float(Decimal(repr(round(x, 9))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def management_score(kpis: dict) -> float | None:
    """Mean of report timeliness × 100, truthfulness × 100 and quality, each present one."""
    timely, truthful = kpis.get("report_timeliness"), kpis.get("report_truthfulness")
    return weighted_mean([(None if timely is None else timely * 100, 1),
                          (None if truthful is None else truthful * 100, 1), (kpis.get("report_quality"), 1)])


def score_month(agents: list[AgentMonth], card: Scorecard) -> list[Standing]:
    """Every agent's standing for the month, ranked agents first by rank, then the rest."""
    served = {a.agent_id: int(a.kpis.get("served_customers") or 0) for a in agents}
    team = [a for a in agents if served[a.agent_id] >= card.min_served_customers]
    team_max = {s.kpi: max((a.kpis.get(s.kpi) for a in team if a.kpis.get(s.kpi) is not None), default=None)
                for s in card.kpis if s.relative}
    out = []
    for a in agents:
        parts = [_kpi_part(s, a.kpis.get(s.kpi), team_max.get(s.kpi)) for s in card.kpis]
        kpi_score = weighted_mean([(p.score, p.weight) for p in parts])
        qa, mgmt = a.kpis.get("qa_score"), management_score(a.kpis)
        manager = weighted_mean([(kpi_score, card.kpi_weight), (qa, card.qa_weight),
                                 (mgmt, card.management_weight), (a.manager_review, card.manager_review_weight)])
        total = weighted_mean([(a.self_review, card.self_weight), (manager, card.manager_weight)])
        n = served[a.agent_id]
        eligible = n >= card.min_served_customers
        reason = (f"served {n} customers (at least {card.min_served_customers})" if eligible
                  else f"served {n} customers, fewer than {card.min_served_customers}: not ranked")
        missing = [name for name, v in (("self_review", a.self_review), ("manager_review", a.manager_review))
                   if v is None] if eligible else []
        out.append(Standing(a.agent_id, eligible, reason, n, kpi_score, parts, qa, mgmt, manager,
                            a.self_review, a.manager_review, round_money(total), missing))
    rank(out)
    return sorted(out, key=lambda s: (s.rank is None, s.rank or 0, s.agent_id))


def rank(standings: list[Standing]) -> None:
    """rank = 1 + ranked agents with a higher total; rank_from_bottom = 1 + those with a lower one."""
    totals = sorted(s.total for s in standings if s.eligible and s.total is not None)
    for s in standings:
        if s.eligible and s.total is not None:
            s.rank = 1 + len(totals) - bisect_right(totals, s.total)
            s.rank_from_bottom = 1 + bisect_left(totals, s.total)


def _kpi_part(scale: KpiScale, value: float | None, team_max: float | None) -> KpiPart:
    if value is None:
        return KpiPart(scale.kpi, None, None, scale.weight, "no data: left out, weights renormalised")
    if scale.relative:
        if not team_max:
            return KpiPart(scale.kpi, value, None, scale.weight, "team maximum is 0: left out")
        score = min(100.0, 100 * value / team_max)
        return KpiPart(scale.kpi, value, score, scale.weight, f"100 × {value:g} / team max {team_max:g}")
    score = linear_score(value, scale.worst, scale.best)
    return KpiPart(scale.kpi, value, score, scale.weight,
                   f"100 × ({value:g} − {scale.worst:g}) / ({scale.best:g} − {scale.worst:g}), clamped")
