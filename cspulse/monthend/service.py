"""The month-end close as an application service: read the month from the store,
score and decide (pure), keep the result as a revision, compare with the last.

A closed month is frozen: its result, and the KPIs and reviews it was computed
from, are kept in the revision, so closing again prints the same thing, a late
event changes nothing in it (it is listed as a post-close adjustment), and
`explain` shows the very numbers the money was decided on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session

from cspulse.core.shopclock import to_us
from rules.engine import ConsequenceEngine
from rules.month_end import MonthEndRules
from store import repo

from .close import decide, missing_reviews
from .scoring import AgentMonth, Scorecard, score_month


class MissingReviews(Exception):
    """Ranked agents lack a review; the message lists them and says what to do."""


@dataclass
class Closed:
    """A stored revision of a month's close (what `close-month` prints)."""

    period: str
    revision: int
    closed_at: str
    result: dict                         # MonthResult.as_json() + "consequences" + "inputs"
    already: bool = False                # it was closed before this call
    changes: list[str] = field(default_factory=list)   # vs the previous revision (reopen)


def close_month(engine: Engine, period: str, *, zone: ZoneInfo, card: Scorecard, rules: MonthEndRules,
                now: datetime, issued_at: datetime | None = None, allow_missing: bool = False,
                reopen: bool = False) -> Closed:
    """Close `period` (YYYY-MM), or return its standing close; `reopen` makes a new revision."""
    with Session(engine) as session:
        current = repo.current_close(period, session=session)
        if current is not None and not reopen:
            return Closed(period, current.revision, current.closed_at, json.loads(current.result),
                          already=True)
        kpis = repo.read_kpis(period, session=session)
        kpis.pop(None, None)
        reviews = repo.read_reviews(period, session=session)
    agents = sorted(set(kpis) | set(reviews))
    months = [AgentMonth(a, kpis.get(a, {}), reviews.get(a, {}).get("self", {}).get("score"),
                         reviews.get(a, {}).get("manager", {}).get("score")) for a in agents]
    standings = score_month(months, card)
    missing = missing_reviews(standings)
    if missing and not allow_missing:
        raise MissingReviews(
            f"{period} not closed: {len(missing)} ranked agent(s) lack a review: "
            + "; ".join(f"{a} ({', '.join(m)})" for a, m in missing.items())
            + ". Record them with `cspulse review self|manager`, or close with --allow-missing-reviews")
    if issued_at is None:
        issued_at = (datetime.fromisoformat(json.loads(current.result)["issued_at"])
                     if current is not None else now)
    result = decide(period, standings, rules, _ClosedMonths(engine), issued_at, zone, ConsequenceEngine(rules).decide)
    body = result.as_json()
    body["consequences"] = [c.as_json() for c in result.consequences]
    body["inputs"] = {"kpis": {a: kpis.get(a, {}) for a in agents}, "reviews": {a: reviews.get(a, {}) for a in agents},
                      "scorecard": card.source, "rules": rules.source,
                      "weights": {"self_review": card.self_weight, "manager": card.manager_weight, "kpi": card.kpi_weight,
                                  "qa": card.qa_weight, "management": card.management_weight,
                                  "manager_review": card.manager_review_weight}}
    changes = []
    if current is not None:
        before = json.loads(current.result)
        changes = diff(before, body)
        kept = {c["id"] for c in body["consequences"]}
        body["withdrawn"] = [c for c in before["consequences"] if c["id"] not in kept]
    with Session(engine) as session:
        row = repo.add_close(period, body, changes, now, session=session)
        repo.write_consequences(result.consequences, row.revision, session=session)
        session.commit()
        return Closed(period, row.revision, row.closed_at, body, changes=changes)


class _ClosedMonths(dict):
    """Earlier months' lines, read from the store when asked for (a last-place streak
    looks back only as far as it runs)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def get(self, month: str, default=None):
        if month not in self:
            with Session(self.engine) as session:
                self[month] = repo.close_lines(month, session=session)
        return super().get(month) or default


def diff(old: dict, new: dict) -> list[str]:
    """What a reopened month changed, one line per change a person would act on."""
    out = []
    agents = list(new["agents"]) + [a for a in old["agents"] if a not in new["agents"]]
    for a in agents:
        o, n = old["agents"].get(a), new["agents"].get(a)
        if o is None or n is None:
            out.append(f"{a}: {'now listed' if o is None else 'no longer listed'}")
            continue
        for key in ("total", "rank", "rank_from_bottom", "eligible"):
            if o[key] != n[key]:
                out.append(f"{a}: {key} {o[key]} -> {n[key]}")
        before = {(c["kind"], c["amount"], c["due"]) for c in o["consequences"]}
        after = {(c["kind"], c["amount"], c["due"]) for c in n["consequences"]}
        out += [f"{a}: + {kind}{f' {amount:g} CNY' if amount else ''}{f' due {due}' if due else ''}"
                for kind, amount, due in sorted(after - before, key=str)]
        out += [f"{a}: - {kind}{f' {amount:g} CNY' if amount else ''} (withdrawn)"
                for kind, amount, due in sorted(before - after, key=str)]
    return out


@dataclass
class PlanState:
    """An improvement plan a close required, and where it stands (SPEC §1: within one week)."""

    period: str
    agent_id: str
    due: str
    state: str                  # required | overdue | submitted | accepted | rejected
    submitted_at_us: int | None
    text: str | None
    decided_by: str | None

    def note(self, now_us: int) -> dict:
        """The observation the rules watch (`watch: plan`): overdue from its due time."""
        if self.submitted_at_us is not None:
            ts = self.submitted_at_us
        else:
            ts = to_us(datetime.fromisoformat(self.due)) if self.state == "overdue" else now_us
        return {"kind": "plan", "ts": ts, "agent_id": self.agent_id, "period": self.period, "due": self.due,
                "state": self.state}


def plan_states(engine: Engine, now_us: int, period: str | None = None,
                submitted: dict[tuple[str, str], tuple[int, str | None]] | None = None) -> list[PlanState]:
    """Every required plan (of the current revisions) and its state as of `now_us`.
    `submitted`: {(period, agent): (ts µs, text)} the caller holds beyond the store's."""
    with Session(engine) as session:
        required = repo.required_plans(session=session, period=period)
        known = {k: (r.ts_us, r.note) for k, r in repo.plan_submissions(session=session).items()}
        decided = repo.plan_decisions(session=session)
    known.update(submitted or {})
    out = []
    for c in required:
        sub, verdict = known.get((c.period, c.agent_id)), decided.get((c.period, c.agent_id))
        if verdict is not None:
            state = verdict.verdict
        elif sub is not None:
            state = "submitted"
        else:
            state = "overdue" if now_us >= to_us(datetime.fromisoformat(c.due)) else "required"
        out.append(PlanState(c.period, c.agent_id, c.due, state, sub[0] if sub else None,
                             sub[1] if sub else None, verdict.by if verdict else None))
    return out
