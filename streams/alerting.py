"""Alerts in the worker: the rules over its partitions' notes, delivered from the outbox.

After each batch the worker hands the rules what its pipelines noted: notes
of applied events and, from the look-ahead of the customers the batch changed,
notes of events still held for ordering, so an alert does not wait for the
allowed lateness.  Every second (the live-KPI refresh) the look-ahead of the
live view adds the waits whose time came, so `customer_waiting` fires with no
further event, and the rules over agents' KPIs are judged.  A note seen ahead
comes again when applied; the alert key makes it one alert.

Rules over agents' KPIs run on one worker only, the one holding input partition
0, over the whole shop's book; with several workers its sliding windows see the
responses of its own partitions only (said in the README).

Delivery, never blocking the stream: `cs.alerts` (JSON, keyed by the alert key;
a plain idempotent producer, outside the input transactions: alerts are
at-least-once and carry their key, action and send count), the store (with the
KPIs, every store interval), `/metrics`, and the webhooks of `CSPULSE_WEBHOOKS`.
"""

from __future__ import annotations

import logging
import time

import msgspec

from cspulse.core import KpiBook, Pipeline
from cspulse.core.params import US
from rules.alerts import Alert, Delivery
from rules.delivery import WebhookSender
from rules.engine import RuleEngine
from rules.load import RuleSet

log = logging.getLogger(__name__)
# An alert message on cs.alerts: UTF-8 JSON (msgspec: 0.7 µs an alert, json.dumps 6.5)
_to_json = msgspec.json.Encoder().encode


def parse_webhooks(spec: str) -> list[tuple[str, str]]:
    """'alertmanager=http://am:9093/api/v2/alerts json=http://hook' -> [(kind, url)]."""
    out = []
    for item in spec.replace(",", " ").split():
        kind, sep, url = item.partition("=")
        if not sep or kind not in ("json", "alertmanager") or not url.startswith(("http://", "https://")):
            raise ValueError(f"webhooks: '{item}' is not json=URL or alertmanager=URL")
        out.append((kind, url))
    return out


class WorkerAlerts:
    def __init__(self, rules: RuleSet, params, metrics, *, webhooks: str = "", shop: str = "default") -> None:
        self.engine = RuleEngine(rules, params)
        # a resolved alert stays in memory until its last match is the dedup horizon (event
        # time) behind the newest note, past which no event counts twice either (stored: not lost)
        self.engine.alerts.forget_resolved_after = round(self.engine.params.dedup_horizon_s * US)
        self.metrics = metrics
        self.senders = [WebhookSender(url, kind, shop=shop) for kind, url in parse_webhooks(webhooks)]
        self.unstored: dict[str, Alert] = {}       # changed since the last store write
        self.retracted: set[str] = set()           # to delete from the store
        self.outgoing: list[tuple[bytes, bytes]] = []   # (key, JSON) for cs.alerts
        # every rule shows on /metrics, at 0 when nothing fires
        self._none_firing = {(r.name, r.severity): 0 for r in rules.rules}
        self._severities = {r.name: r.severity for r in rules.rules}
        metrics.firing.counts = dict(self._none_firing)

    def load(self, alerts, now: int) -> None:
        """Continue from the stored alerts, and hand the webhooks again what may have been
        queued for them when the worker stopped (their queues live in memory): every
        firing alert, and those resolved within the last 30 min.  A receiver may see an
        alert twice, never miss one; Alertmanager takes a repeat as the same alert."""
        self.engine.alerts.load(alerts, self.engine.rules)
        recent = now - 30 * 60 * US
        again = [Delivery("repeat" if a.state == "firing" else "resolved", a.as_json()) for a in alerts
                 if a.state == "firing" or (a.resolved_at or 0) >= recent]
        for sender in self.senders:
            sender.put(again)

    def step(self, pipelines: dict[int, Pipeline], book: KpiBook | None, now: int) -> None:
        """Observe the pipelines' new notes; with `book` (the leader), judge the agents too."""
        applied, ahead = [], {}
        for pl in list(pipelines.values()):
            notes, seen_ahead = pl.drain_notes()
            applied += notes
            ahead.update(seen_ahead)
        applied.sort(key=lambda n: n["ts"])
        agents = set()
        for note in applied:            # final: confirms what a look-ahead fired
            self.engine.observe(note)
            if note.get("agent_id"):
                agents.add(note["agent_id"])
        for customer, notes in ahead.items():     # provisional: replaces that customer's last look
            self.engine.observe_ahead(customer, notes, now)
        if book is not None:
            agents |= {w for (w, p) in book.stated if w is not None}
            self.engine.agents_changed(agents, now, book)
        self.engine.tick(now, book)
        self._deliver()

    def observe(self, notes: list[dict]) -> None:
        """Observations from outside the pipelines (improvement plans' states), delivered."""
        for note in notes:
            self.engine.observe(note)
        self._deliver()

    def _deliver(self) -> None:
        deliveries = self.engine.alerts.drain()
        if not deliveries:
            return
        for d in deliveries:
            if d.action == "firing":   # (a retracted one stays counted: it was sent)
                self.metrics.alerts.labels(d.alert["rule"], d.alert["severity"]).inc()
            self.outgoing.append((d.alert["key"].encode(), _to_json(dict(d.alert, action=d.action))))
        changed, retracted = self.engine.alerts.changed_since(deliveries)
        for alert in changed:
            self.unstored[alert.key] = alert
            self.retracted.discard(alert.key)
        for key in retracted:
            self.unstored.pop(key, None)
            self.retracted.add(key)
        for sender in self.senders:
            sender.put(deliveries)
        self.metrics.firing.counts = {**self._none_firing, **self.engine.alerts.firing_counts(self._severities)}

    def take_unstored(self) -> tuple[list[Alert], list[str]]:
        out = (list(self.unstored.values()), list(self.retracted))
        self.unstored, self.retracted = {}, set()
        return out

    def close(self) -> None:
        for sender in self.senders:
            sender.close()


def now_us() -> int:
    return round(time.time() * US)
