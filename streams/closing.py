"""The worker's month-end duties, on the worker that holds input partition 0 (one
judge, like the agent alert rules): close the previous month on schedule (SPEC §5:
00:30 on the 2nd, after every inquiry window of the month has ended), publish the
consequences to `cs.consequences`, and watch the improvement plans' due times.

The automatic close never waits for a review: a ranked agent without one is
closed as `--allow-missing-reviews` closes (left out, renormalised, marked), and
the log says who; a manager who adds it later reopens the month (`--reopen`),
which keeps each consequence's identity.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cspulse.monthend import service
from sqlmodel import Session

from store import repo

log = logging.getLogger(__name__)


def due_period(now: datetime, zone: ZoneInfo, close_day: int, close_time: str) -> str:
    """The latest month whose scheduled close time has passed as of `now`."""
    local = now.astimezone(zone)
    hour, minute = (int(x) for x in close_time.split(":"))
    first = date(local.year, local.month, 1)
    scheduled = datetime.combine(first + timedelta(days=close_day - 1), time(hour, minute), zone)
    months_back = 1 if local >= scheduled else 2
    y, m = local.year, local.month - months_back
    while m < 1:
        y, m = y - 1, m + 12
    return f"{y:04d}-{m:02d}"


def close_if_due(engine, settings, now: datetime) -> service.Closed | None:
    """Close the month due by `now` unless it is closed already; the new close, or None."""
    zone = settings.params().zone
    period = due_period(now, zone, settings.close_day, settings.close_time)
    with Session(engine) as session:
        if repo.current_close(period, session=session) is not None:
            return None
        if not repo.read_kpis(period, session=session):
            return None                     # nothing happened that month (a new shop)
    closed = service.close_month(engine, period, zone=zone, card=settings.scorecard, rules=settings.month_end,
                                 now=now.astimezone(zone), allow_missing=True)
    missing = {a: x["missing_reviews"] for a, x in closed.result["agents"].items() if x["missing_reviews"]}
    log.info("closed %s (revision %d): %d agents ranked, %d consequences%s", period, closed.revision,
             closed.result["ranked"], len(closed.result["consequences"]),
             f"; reviews missing: {missing}" if missing else "")
    return closed


def unpublished(engine) -> list[tuple[str, int, list[tuple[bytes, bytes]]]]:
    """Every close whose consequences are not on `cs.consequences` yet, whoever closed it
    (the schedule, or a manager's `close-month`/`--reopen`): (period, revision, messages)."""
    with Session(engine) as session:
        return [(row.period, row.revision, consequence_messages(json.loads(row.result), row.revision))
                for row in repo.unpublished_closes(session=session)]


def mark_published(engine, period: str, revision: int) -> None:
    with Session(engine) as session:
        repo.mark_published(period, revision, session=session)
        session.commit()


def consequence_messages(result: dict, revision: int) -> list[tuple[bytes, bytes]]:
    """(key, JSON) for `cs.consequences`: keyed by agent; `id` is stable across revisions, so
    a consumer that pays by id pays once (a reopened month sends its consequences again, with
    `revision`; one it withdrew is sent with "state": "withdrawn")."""
    current = {c["id"] for c in result["consequences"]}
    out = [(c["agent_id"].encode(), json.dumps({**c, "revision": revision, "state": "active"},
                                               ensure_ascii=False).encode()) for c in result["consequences"]]
    for c in result.get("withdrawn", []):
        if c["id"] not in current:
            out.append((c["agent_id"].encode(), json.dumps({**c, "revision": revision, "state": "withdrawn"},
                                                           ensure_ascii=False).encode()))
    return out
