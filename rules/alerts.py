"""The alert lifecycle, pure: what a rule's match or miss means for its alert.

An alert is keyed by (rule, agent, subject: the conversation or order where one
applies).  It fires once per key; while it holds, a new match re-sends it at
most once per `repeat_interval`; a miss on the same key resolves it, and so does
`resolve_after` without a match (for rules about single events).  Every change
goes to the outbox, which the adapters deliver (store, Kafka, webhooks, metrics).
Times are event-time µs, so replaying a file gives the same alerts.
"""

from __future__ import annotations

import functools
from collections import Counter, deque
from dataclasses import dataclass, field, fields

from cspulse.core.due import DueQueue
from cspulse.core.params import US
from cspulse.core.shopclock import from_us

from .load import SUBJECT, Rule


@dataclass
class Alert:
    key: str
    rule: str
    agent_id: str | None
    subject: str | None
    severity: str
    message: str
    state: str = "firing"            # firing | resolved (| retracted: a false alarm, removed)
    fired_at: int = 0                # µs, event time
    last_sent_at: int = 0
    last_match_at: int = 0
    resolved_at: int | None = None
    sends: int = 1
    labels: dict = field(default_factory=dict)

    def as_record(self) -> dict:
        """The alert's fields as they are (times in µs), for the store: `Alert(**record)`
        gives it back.  (Field by field: `dataclasses.asdict` copies recursively, and cost a
        tenth of the rules' time in a backlog, measured in process with cProfile, and a
        third of the store thread's alert write, py-spy on `bench/worker.py --days 75`.)"""
        out = {name: getattr(self, name) for name in _FIELDS}
        out["labels"] = dict(self.labels)
        return out

    def as_json(self) -> dict:
        """The alert as `cspulse alerts --json` and the delivery adapters show it: its
        record with the times as ISO dates."""
        out = self.as_record()
        for t in ("fired_at", "last_sent_at", "last_match_at", "resolved_at"):
            out[t] = None if out[t] is None else _iso(out[t])
        return out


_FIELDS = tuple(f.name for f in fields(Alert))


@functools.lru_cache(maxsize=4096)
def _iso(us: int) -> str:
    """An event time as an ISO date, remembered: an alert's times are mostly the same few
    (fired, last sent and last matched at one note's time), and every delivery writes
    four (a twelfth of the rules' time in a backlog, in process with cProfile)."""
    return from_us(us).isoformat()


@dataclass(frozen=True)
class Delivery:
    action: str        # firing | repeat | resolved | retracted
    alert: dict        # Alert.as_json() at the time


def alert_key(rule: Rule, values: dict) -> tuple[str, str | None]:
    subject_field = SUBJECT[rule.watch]
    subject = values.get(subject_field) if subject_field else None
    if rule.watch == "complaint" and subject is None:
        subject = values.get("event_id")     # a complaint outside any conversation is its own subject
    return f"{rule.name}|{values.get('agent_id') or ''}|{subject or ''}", subject


class AlertBook:
    """Every alert by key, and the outbox of changes not yet delivered."""

    def __init__(self) -> None:
        self.alerts: dict[str, Alert] = {}
        self.outbox: list[Delivery] = []
        self._timed: dict[str, float] = {}   # firing keys with a resolve_after -> its µs
        # When each of those is next due to resolve (its last match + resolve_after, as
        # queued): a pass over every timed alert at each step cost what had fired in the
        # last resolve_after (measured: 3,800 complaint alerts in an hour at 10 a second).
        self._timed_due = DueQueue()
        self._firing: dict[str, set[str]] = {}   # rule -> keys of its firing alerts
        # Alerts fired from a look-ahead only (events still held for ordering): the
        # customer whose look-ahead supports each, until an applied event confirms it.
        self._provisional: dict[str, str] = {}
        self._supports: dict[str, set[str]] = {}  # customer -> keys it alone supports
        self.matched_keys: list[str] | None = None  # a list: keys matched are recorded in it
        # Resolved alerts are kept to tell an observation seen again from a new one, but
        # not for ever (every alert ever fired stayed in memory: the worker grew ≈ 200 bytes
        # an event over 75 days of a 20-agent shop, `bench/worker.py --days 75`): with
        # `forget_resolved_after` set (the worker; a dry run lists every alert), one whose
        # last match is that far behind the newest note observed is forgotten here (the
        # store keeps it).  Notes come in event-time order, a look-ahead's within
        # the allowed lateness, so none can match it again as a repeat; a match after that
        # is news and fires anew.
        self.newest = 0                      # µs: the newest note's event time observed
        self.forget_resolved_after: int | None = None     # µs
        self._resolved: deque[str] = deque()     # keys, in the order they were resolved (when forgotten)

    def matched(self, rule: Rule, values: dict, now: int, provisional_for: str | None = None) -> None:
        """The rule's condition holds for this subject; `provisional_for` names the
        customer whose look-ahead saw it (None: an applied event, final)."""
        key, subject = alert_key(rule, values)
        if self.matched_keys is not None:
            self.matched_keys.append(key)
        alert = self.alerts.get(key)
        message = rule.render(values)
        if provisional_for is None and key in self._provisional:
            # confirmed by the applied event: its time and message are the final ones
            self._supports[self._provisional.pop(key)].discard(key)
            if alert is not None and alert.state == "firing":
                alert.fired_at, alert.message = now, message
                alert.last_match_at = max(alert.last_match_at, now)
                return
        if alert is not None and alert.state == "resolved" and now <= alert.last_match_at:
            return      # the observation that fired it, seen again (a replay continued): nothing new
        if alert is None or alert.state == "resolved":
            if provisional_for is not None:
                self._provisional[key] = provisional_for
                self._supports.setdefault(provisional_for, set()).add(key)
            labels = {k: v for k, v in values.items() if k in ("customer_id", "conversation_id", "order_id", "period")
                      and v is not None}
            alert = self.alerts[key] = Alert(key, rule.name, values.get("agent_id"), subject, rule.severity, message,
                                             fired_at=now, last_sent_at=now, last_match_at=now, labels=labels)
            self._send("firing", alert)
        else:
            alert.last_match_at, alert.message = max(alert.last_match_at, now), message
            if now - alert.last_sent_at >= rule.repeat_s * US:
                alert.last_sent_at, alert.sends = now, alert.sends + 1
                self._send("repeat", alert)
        if rule.resolve_after_s is not None:
            self._time(alert, rule.resolve_after_s * US)

    def reconcile(self, customer: str, supported: set[str], now: int) -> None:
        """The customer's latest look-ahead supports only `supported`: an alert its
        earlier look-ahead alone fired, and which no applied event confirmed, was a
        false alarm (an event arrived late) and is retracted: gone, and said so."""
        for key in list(self._supports.get(customer, ())):
            if key not in supported:
                self._supports[customer].discard(key)
                del self._provisional[key]
                alert = self.alerts.pop(key)
                self._unindex(alert)
                alert.state, alert.resolved_at = "retracted", now
                self.outbox.append(Delivery("retracted", alert.as_json()))
        if not self._supports.get(customer, True):
            del self._supports[customer]

    def missed(self, rule: Rule, values: dict, now: int) -> None:
        """The rule looked at this subject and its condition does not hold."""
        if not self._firing.get(rule.name):
            return              # (most misses: nothing of the rule fires, no key to make)
        alert = self.alerts.get(alert_key(rule, values)[0])
        if alert is not None and alert.state == "firing":
            self._resolve(alert, now)

    def firing(self, rule_names=None) -> list[Alert]:
        names = self._firing if rule_names is None else rule_names
        return [self.alerts[k] for name in names for k in self._firing.get(name, ())]

    def firing_counts(self, severities: dict[str, str]) -> Counter:
        """(rule, severity) -> alerts firing, at the cost of the rules: a rule in `severities`
        (rule -> severity) counts whole under it; others (stored by an older rule file)
        alert by alert."""
        out: Counter = Counter()
        for name, keys in self._firing.items():
            if not keys:
                continue
            severity = severities.get(name)
            if severity is not None:
                out[(name, severity)] += len(keys)
            else:
                out.update((name, self.alerts[k].severity) for k in keys)
        return out

    def tick(self, now: int) -> None:
        """Resolve alerts about single events once `resolve_after` passed with no match;
        only those whose time came are looked at."""
        for key in self._timed_due.pop_due(now):
            after, alert = self._timed.get(key), self.alerts.get(key)
            if after is None or alert is None or alert.state != "firing":
                self._timed.pop(key, None)
            elif now >= alert.last_match_at + after:
                self._resolve(alert, alert.last_match_at + round(after))
            else:
                self._timed_due.put(key, alert.last_match_at + after)   # matched again since it was queued

    def _time(self, alert: Alert, after: float) -> None:
        """Resolve this firing alert `after` µs past its last match, unless matched again."""
        self._timed[alert.key] = after
        if alert.key not in self._timed_due:
            self._timed_due.put(alert.key, alert.last_match_at + after)

    def forget_resolved(self) -> None:
        """Forget resolved alerts whose last match is `forget_resolved_after` behind the newest
        note observed (none with a delivery still in the outbox: the store must see it)."""
        if self.forget_resolved_after is None:
            return
        cutoff, queue = self.newest - self.forget_resolved_after, self._resolved
        waiting = None
        while queue:
            alert = self.alerts.get(queue[0])
            if alert is not None and alert.state == "resolved":
                if alert.last_match_at >= cutoff:
                    return
                if waiting is None:
                    waiting = {d.alert["key"] for d in self.outbox}
                if alert.key in waiting:
                    return
                del self.alerts[alert.key]
            queue.popleft()         # forgotten, or fired again since (queued again when it resolves)

    def load(self, alerts, rules) -> None:
        """Continue from stored alerts (`rules`: the RuleSet, for their resolve_after)."""
        after = {r.name: r.resolve_after_s for r in rules.rules if r.resolve_after_s is not None}
        alerts = sorted(alerts, key=lambda a: a.resolved_at or 0)
        for alert in alerts:
            self.alerts[alert.key] = alert
            if alert.state == "resolved" and self.forget_resolved_after is not None:
                self._resolved.append(alert.key)
            if alert.state == "firing":
                self._firing.setdefault(alert.rule, set()).add(alert.key)
            if alert.state == "firing" and alert.rule in after:
                self._time(alert, after[alert.rule] * US)

    def changed_since(self, deliveries: list[Delivery]) -> tuple[list[Alert], list[str]]:
        """(alerts changed by these deliveries, keys of those retracted)."""
        keys = dict.fromkeys(d.alert["key"] for d in deliveries)
        return [self.alerts[k] for k in keys if k in self.alerts], [k for k in keys if k not in self.alerts]

    def drain(self) -> list[Delivery]:
        out, self.outbox = self.outbox, []
        return out

    def _resolve(self, alert: Alert, now: int) -> None:
        alert.state, alert.resolved_at = "resolved", now
        if self.forget_resolved_after is not None:
            self._resolved.append(alert.key)
        self._unindex(alert)
        self._send("resolved", alert)

    def _unindex(self, alert: Alert) -> None:
        """It no longer fires: out of the firing and resolve_after indexes."""
        self._timed.pop(alert.key, None)
        self._timed_due.discard(alert.key)
        self._firing.get(alert.rule, set()).discard(alert.key)

    def _send(self, action: str, alert: Alert) -> None:
        if alert.state == "firing":
            self._firing.setdefault(alert.rule, set()).add(alert.key)
        self.outbox.append(Delivery(action, alert.as_json()))
