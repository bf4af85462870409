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

`WorkerAlerts` judges in the calling process; `AlertsProcess` (the worker's default)
runs a WorkerAlerts in a process of its own, so the rules use the machine's other
core while the worker reads on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from types import SimpleNamespace

import msgspec

from cspulse.core import KpiBook, Pipeline
from cspulse.core.params import US
from cspulse.core.shopclock import ShopClock
from rules.alerts import Alert, Delivery
from rules.delivery import WebhookSender
from rules.engine import RuleEngine
from rules.load import RuleSet
from streams.topics import key_hash

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


class _Outbox:
    """What the worker takes from its alerts: the messages for cs.alerts, the alerts the
    store has not been given yet (changed ones, and keys retracted), and its webhooks."""

    def __init__(self, rules: RuleSet, metrics, webhooks: str, shop: str) -> None:
        self.metrics = metrics
        self.senders = [WebhookSender(url, kind, shop=shop) for kind, url in parse_webhooks(webhooks)]
        self.unstored: dict[str, Alert] = {}       # changed since the last store write
        self.retracted: set[str] = set()           # to delete from the store
        self.outgoing: list[tuple[bytes, bytes, int]] = []   # (key, JSON, `key_hash`) for cs.alerts
        # every rule shows on /metrics, at 0 when nothing fires
        self._none_firing = {(r.name, r.severity): 0 for r in rules.rules}
        metrics.firing.counts = dict(self._none_firing)

    def _changed(self, changed: list[Alert], retracted: list[str]) -> None:
        for alert in changed:
            self.unstored[alert.key] = alert
            self.retracted.discard(alert.key)
        for key in retracted:
            self.unstored.pop(key, None)
            self.retracted.add(key)

    def take_answers(self, wait: bool = False) -> None:
        """(Judged at once in this process; see AlertsProcess.)"""

    def take_unstored(self, wait: bool = False) -> tuple[list[Alert], list[str]]:
        self.take_answers(wait)
        out = (list(self.unstored.values()), list(self.retracted))
        self.unstored, self.retracted = {}, set()
        return out

    def close(self) -> None:
        for sender in self.senders:
            sender.close()


class WorkerAlerts(_Outbox):
    def __init__(self, rules: RuleSet, params, metrics, *, webhooks: str = "", shop: str = "default") -> None:
        super().__init__(rules, metrics, webhooks, shop)
        self.engine = RuleEngine(rules, params)
        # a resolved alert stays in memory until its last match is the dedup horizon (event
        # time) behind the newest note, past which no event counts twice either (stored: not lost)
        self.engine.alerts.forget_resolved_after = round(self.engine.params.dedup_horizon_s * US)
        self._severities = {r.name: r.severity for r in rules.rules}

    def load(self, alerts, now: int) -> None:
        """Continue from the stored alerts, and hand the webhooks again what may have been
        queued for them when the worker stopped (their queues live in memory): every
        firing alert, and those resolved within the last 30 min.  A receiver may see an
        alert twice, never miss one; Alertmanager takes a repeat as the same alert."""
        self.engine.alerts.load(alerts, self.engine.rules)
        for sender in self.senders:
            sender.put(_sent_again(alerts, now))

    def step(self, pipelines: dict[int, Pipeline], book: KpiBook | None, now: int) -> None:
        """Observe the pipelines' new notes; with `book` (the leader), judge the agents too."""
        self.judge(*drain_notes(pipelines), book, now)

    def judge(self, applied: list[dict], ahead: dict[str, list[dict]], book: KpiBook | None, now: int) -> None:
        """Observe notes of applied events (in time order) and of look-aheads (by customer);
        with `book`, judge the agents too."""
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
            key = d.alert["key"].encode()
            self.outgoing.append((key, _to_json(dict(d.alert, action=d.action)), key_hash(key)))
        self._changed(*self.engine.alerts.changed_since(deliveries))
        for sender in self.senders:
            sender.put(deliveries)
        self.metrics.firing.counts = {**self._none_firing, **self.engine.alerts.firing_counts(self._severities)}


def _sent_again(alerts: list[Alert], now: int) -> list[Delivery]:
    """What a restarted worker hands its webhooks again: every firing alert, and those
    resolved within the last 30 min (see WorkerAlerts.load)."""
    recent = now - 30 * 60 * US
    return [Delivery("repeat" if a.state == "firing" else "resolved", a.as_json()) for a in alerts
            if a.state == "firing" or (a.resolved_at or 0) >= recent]


def drain_notes(pipelines: dict[int, Pipeline]) -> tuple[list[dict], dict[str, list[dict]]]:
    """The pipelines' new notes: of applied events, in time order, and of look-aheads, by customer."""
    applied, ahead = [], {}
    for pl in list(pipelines.values()):
        notes, seen_ahead = pl.drain_notes()
        applied += notes
        ahead.update(seen_ahead)
    applied.sort(key=lambda n: n["ts"])
    return applied, ahead


class _Tally:
    """The metrics a WorkerAlerts sets, kept for its owner in the other process."""

    def __init__(self) -> None:
        self.fired: Counter = Counter()
        self.firing = SimpleNamespace(counts={})
        self.alerts = self

    def labels(self, rule: str, severity: str):
        return _Inc(self.fired, (rule, severity))


class _Inc:
    def __init__(self, counter: Counter, key) -> None:
        self.counter, self.key = counter, key

    def inc(self, n: int = 1) -> None:
        self.counter[self.key] += n


def _serve(conn, rules: RuleSet, params) -> None:
    """The rules process: WorkerAlerts over the notes its owner sends, one answer a request
    (sent by a thread of its own, so that neither side can block the other on a full pipe)."""
    import queue
    import threading

    tally, delivered = _Tally(), []
    alerts = WorkerAlerts(rules, params, tally)
    alerts.senders = [SimpleNamespace(put=delivered.extend, close=lambda: None)]     # for the owner's webhooks
    answers: queue.Queue = queue.Queue()

    def answer() -> None:
        while (item := answers.get()) is not None:
            conn.send(item)

    sender = threading.Thread(target=answer, name="answers", daemon=True)
    sender.start()
    while True:
        try:
            request = conn.recv()
        except EOFError:            # the owner is gone
            break
        op = request[0]
        if op == "stop":
            break
        if op == "judge":
            alerts.judge(*request[1:-1])
        elif op == "observe":
            alerts.observe(request[1])
        elif op == "load":
            alerts.engine.alerts.load(request[1], alerts.engine.rules)
        changed, retracted = alerts.take_unstored()
        answers.put((alerts.outgoing, changed, retracted, dict(tally.fired), tally.firing.counts,
                     list(delivered) if request[-1] else []))
        alerts.outgoing = []
        delivered.clear()
        tally.fired.clear()
    answers.put(None)
    sender.join()


class AlertsProcess(_Outbox):
    """WorkerAlerts run in a process of its own: the worker hands it each batch's notes
    and goes on reading; its answers (the alerts to send, store and show) are taken in
    as they come.  The rules step and the alerts' delivery took a fifth to a third of
    the worker's one busy core in a backlog (py-spy, `bench/worker.py --days 10`:
    146 µs of CPU an event with the default rules, 92 with a rule file that never
    fires), while the machine was 22-45% idle.

    Same interface as WorkerAlerts for the worker.  A request waits only for the pipe
    (the rules process reads requests as it finishes the one before: a backlog is read
    no faster than its rules are judged).  If the rules process dies, the next request
    or answer raises: the worker stops, and its restart reads again from its last commit."""

    def __init__(self, rules: RuleSet, params, metrics, *, webhooks: str = "", shop: str = "default") -> None:
        super().__init__(rules, metrics, webhooks, shop)    # (its /metrics at 0 until the first answer)
        self.rules, self.params = rules, params
        self._clock = ShopClock(params)
        self._conn = self._proc = None
        self._waiting = 0           # requests not answered yet
        self.started = None         # called with the pipe's file descriptor once the process runs

    def _start(self) -> None:
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")     # (the worker has threads: no fork)
        self._conn, theirs = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(theirs, self.rules, self.params), name="cspulse-rules",
                                 daemon=True)
        self._proc.start()
        theirs.close()
        if self.started is not None:
            self.started(self._conn.fileno())

    def _ask(self, *request) -> None:
        if self._conn is None:
            self._start()
        self.take_answers()
        self._conn.send((*request, bool(self.senders)))
        self._waiting += 1

    def step(self, pipelines: dict[int, Pipeline], book: KpiBook | None, now: int) -> None:
        applied, ahead = drain_notes(pipelines)
        # (the agent rules read today's and this month's KPIs: only this month's go over)
        self._ask("judge", applied, ahead, None if book is None else book.copy(self._clock.day(now)[:7]), now)

    def observe(self, notes: list[dict]) -> None:
        self._ask("observe", notes)

    def load(self, alerts, now: int) -> None:
        self._ask("load", alerts)
        for sender in self.senders:
            sender.put(_sent_again(alerts, now))

    def fileno(self) -> int:
        return self._conn.fileno()

    def answers_came(self) -> None:
        """Take in the answers that came, as their pipe turned readable: with none due, only
        the end of the pipe can have come (the rules process is gone): EOFError."""
        if not self._waiting and self._conn is not None and self._conn.poll():
            self._conn.recv()
            raise EOFError("the rules process sent what was not asked for")
        self.take_answers()

    def take_answers(self, wait: bool = False) -> None:
        """Take in the answers that came (`wait`: all of them, waiting for those still due)."""
        while self._waiting and self._conn is not None and (wait or self._conn.poll()):
            outgoing, changed, retracted, fired, firing, delivered = self._conn.recv()
            self._waiting -= 1
            self.outgoing += outgoing
            self._changed(changed, retracted)
            for (rule, severity), n in fired.items():
                self.metrics.alerts.labels(rule, severity).inc(n)
            if firing:
                self.metrics.firing.counts = firing
            for sender in self.senders:
                sender.put(delivered)

    def close(self) -> None:
        if self._conn is not None:
            self.take_answers(wait=True)
            if self.started is not None:
                with contextlib.suppress(Exception):        # (the loop may be closed already)
                    asyncio.get_event_loop().remove_reader(self._conn.fileno())
            with contextlib.suppress(OSError):
                self._conn.send(("stop",))
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.kill()
            self._conn = None
        super().close()


def now_us() -> int:
    return round(time.time() * US)
