"""The rules beside a `Pipeline` in one process (replay, `rules check`, the demo).

The core's notes go to the rules as the events are applied, in event-time order;
agents' KPIs are looked at again every 5 s of event time (and at the end),
so `customer_waiting` fires from stream time even when no further event arrives
for that customer.  At the end (`finish`) the events still held for ordering
(the last `allowed_lateness`) are looked at on copies, and the agents' KPIs once,
as of the end.  Deterministic: the same file gives the same alerts.
"""

from __future__ import annotations

from cspulse.core import KpiBook, Pipeline
from cspulse.core.params import US

from .engine import RuleEngine

# Agents' KPIs are re-read at most this often in event time: an alert on a KPI is a
# minute-scale thing, and reading them after every event would cost 10x the core.
_EVERY = 5 * US


class AlertRunner:
    def __init__(self, pipeline: Pipeline, engine: RuleEngine) -> None:
        self.pipeline, self.engine = pipeline, engine
        pipeline.ledger.notes = []
        pipeline.book.changed = set()
        self.now = 0
        self._agents: set[str] = set()
        self._next_look = 0

    def step(self) -> None:
        """Call after each event fed to the pipeline."""
        pl = self.pipeline
        notes = pl.ledger.notes
        if notes:
            self._observe(notes, pl.book)
            notes.clear()
        changed = pl.book.changed
        if changed:
            self._agents.update(who for who, _ in changed if who is not None)
            changed.clear()
        if pl.max_ts is not None:
            self.now = max(self.now, pl.max_ts - pl.lateness)
        if self.now >= self._next_look:
            self._look(self.now, pl.book)

    def finish(self, until: int | None = None) -> KpiBook:
        """The alerts as of `until` (default: the newest event): held events and due
        timers are looked at on copies, in the same `Pipeline.view` that gives the
        KPIs as of then; that view is returned."""
        pl = self.pipeline
        self.step()
        notes: list = []
        book = pl.view(until, notes=notes)
        now = until if until is not None else pl.max_ts
        if now is None:
            return book
        self._observe(notes, book)
        self._agents.update(book.agents(pl.clock.day(now)))
        self.now = max(self.now, now)
        self._look(self.now, book)
        return book

    def _observe(self, notes, book) -> None:
        # One release can apply many minutes of events at once: look at the agents as
        # time passes through the notes, so a sliding window sees each moment.
        # (Today's and the month's KPIs are read as they are now: a second's skew.)
        for note in notes:
            ts = note["ts"]
            self.engine.observe(note)
            if ts > self.now:
                self.now = ts
            if note.get("agent_id"):
                self._agents.add(note["agent_id"])
            if ts >= self._next_look:
                self._look(ts, book)

    def _look(self, now: int, book) -> None:
        self.engine.agents_changed(self._agents, now, book)
        self.engine.tick(now, book)
        self._agents.clear()
        self._next_look = now + _EVERY
