"""The one adapter that owns durable-rules.

The rule files are compiled into one durable-rules ruleset per `RuleEngine`
(a fresh name each time, so tests can make as many as they like).  Observations
(`Note`s from the core) are asserted as facts and retracted at once (an event
posted to durable-rules is consumed by the first rule it matches, so a second
rule watching the same kind would never see it; a fact is matched by every rule).  Each
agent's live KPIs are one aggregate fact, retracted and asserted again when a
value the rules read changes (the engine keeps about 8 KB per retained fact,
so never one per chat or order).  The engine's own timer threads are never
started: everything runs on the caller's thread, and time is passed in.

A consequent only records which rule matched; `AlertBook` decides what that
means (fire, repeat, resolve) and queues it in its outbox for delivery.
"""

from __future__ import annotations

import copy
import itertools

import durable_rules_engine as _engine    # the C engine under durable's Python host
import msgspec
from durable import engine as durable

from cspulse.core import KpiBook
from cspulse.core.params import US, Params
from cspulse.core.shopclock import ShopClock

from .alerts import AlertBook
from .load import RuleSet, window_prefix
from .sliding import SlidingCounts

_names = itertools.count(1)
# Every fact goes to one durable-rules session: the engine holds at most 1,023 sessions
# (the 1,024th raises MemoryError; measured), so a session per agent would stop a shop of
# more than a thousand agents.  The rules match one fact each, so nothing is shared.
SESSION = "0"
_to_json = msgspec.json.Encoder().encode
_decode_actions = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


class _Host(durable.Host):
    """A durable-rules host with no timer threads, holding one ruleset (named afresh, so
    tests can make as many as they like); consequents record the rule's name."""

    def __init__(self, prefix: str, rules) -> None:
        self._hits: list[str] = []
        super().__init__()
        self.ruleset = f"{prefix}_{next(_names)}"
        definition = {r.name: {"all": [{"m": r.compiled()}], "run": r.name} for r in rules}
        # durable-rules deletes "run" from what it is given: hand it a copy
        self.register_rulesets(copy.deepcopy({self.ruleset: definition}))
        self._rules = self.get_ruleset(self.ruleset)

    def matches(self, fact: dict, keep: bool = False) -> set[str]:
        """The rules a fact matches; it is retracted again unless `keep`.

        What `Host.assert_fact` and `Host.retract_fact` do, on the ruleset's engine
        handle, less two costs a note paid there: a miss (most notes) raised an
        exception carrying the fact written out as JSON a second time, and the
        retraction wrote it out a third time (measured in process: a third of the
        rules' time).  The result codes are durable-rules 2.0.28's (pinned):
        0 handled, 1 no rule matched, 2 already observed, 3 queued.  The fact is written
        out by msgspec (UTF-8 as `json.dumps(ensure_ascii=False)`, several times faster)."""
        self._hits.clear()
        text = _to_json(fact).decode()
        self._post(_engine.assert_fact, text, fact)
        if not keep:
            self._post(_engine.retract_fact, text, fact)
        return set(self._hits)

    def _post(self, call, text: str, fact: dict) -> None:
        rules = self._rules
        code, handle = call(rules._handle, text)[:2]
        if code == 1:
            return                              # no rule matched
        if code == 2:
            raise durable.MessageObservedException(fact)
        # The consequents, run as durable's `Ruleset.do_actions` runs them, less its Python
        # machinery (a Closure with the state and the match parsed from JSON, the state
        # written out again): a consequent here only records its rule, and changes no
        # state, so the state text goes back as it came.  (A matching note cost 38.7 µs
        # through `do_actions`, 14.4 µs here: 300,000 notes through `matches` in process.)
        state_handle = handle if code == 0 else 0
        result = _engine.start_action_for_state(rules._handle, state_handle)
        if not result:
            return
        state, actions = result[0], result[1]
        while actions:
            for name in _decode_actions(actions):     # {rule name: the match}: one a time
                self._hits.append(name)
            _engine.update_state(rules._handle, state)
            actions = _engine.complete_and_start_action(rules._handle, state_handle)

    def _run(self) -> None:     # no threads: the caller dispatches, on its own thread
        pass

    def get_action(self, action_name: str):
        # durable binds an action to each rule when the ruleset is registered; `_post` runs
        # the consequents itself (recording the rule), so durable never calls this one.
        return _unused_action


def _unused_action(c) -> None:
    raise AssertionError("durable ran a consequent: _Host._post runs them")


class RuleEngine:
    """Rules over notes and agents' live KPIs; alerts into `self.alerts` (with its outbox)."""

    def __init__(self, rules: RuleSet, params: Params | None = None) -> None:
        self.rules = rules
        self.params = params or Params()
        self.clock = ShopClock(self.params)
        self.alerts = AlertBook()
        self._host = _Host("cspulse_alerts", rules.rules)
        self._ids = itertools.count(1)
        self._by_kind = {kind: rules.watching(kind) for kind in {r.watch for r in rules.rules}}
        self._facts: dict[str, tuple[dict, dict]] = {}     # agent -> (its values, the fact asserted)
        self._windows = rules.agent_windows
        self._needed = {w: rules.needed(w) for w in self._windows}
        self._lengths = sorted({round(s * US) for s in self._windows.values() if s})   # sliding windows, µs
        self._recent: dict[str, dict[int, SlidingCounts]] = {}   # agent -> window length -> its counts
        # customer -> (its look-ahead's notes observed, in time order; the alert keys they matched)
        self._seen_ahead: dict[str, tuple[list, frozenset]] = {}

    # -- observations ---------------------------------------------------------

    def observe(self, note: dict, provisional_for: str | None = None) -> None:
        """One note from the core: post it to the rules watching its kind (`provisional_for`:
        the customer whose look-ahead wrote it; see AlertBook.reconcile)."""
        kind, now = note["kind"], note["ts"]
        if now > self.alerts.newest:
            self.alerts.newest = now
        agent = note.get("agent_id")
        if self._lengths and agent is not None and provisional_for is None \
                and kind in ("response", "complaint", "order_flagged"):
            for counts in self._windows_of(agent).values():
                counts.add(now, kind, note.get("response_s"))
        rules = self._by_kind.get(kind)
        if not rules:
            return
        fact = {k: v for k, v in note.items() if v is not None}
        fact["id"] = f"n{next(self._ids)}"
        fact["sid"] = SESSION
        self._judge(rules, self._host.matches(fact), now, lambda rule: note, provisional_for)

    def observe_ahead(self, customer: str, notes: list[dict], now: int) -> None:
        """The notes of a customer's latest look-ahead (events still held for ordering),
        replacing those of its last one: an alert only they supported, and no longer
        supported, is retracted (`AlertBook.reconcile`).

        A look-ahead's notes come again every time its customer changes, and mostly
        they are the ones already observed with something after them: only those
        after are news, so only they are posted (observing all again was a tenth of
        a worker's time under a steady chat load: durable-rules posts JSON).  Notes
        that differ in what was seen before are all observed again."""
        alerts = self.alerts
        notes = sorted(notes, key=lambda n: n["ts"])
        old, keys = self._seen_ahead.get(customer, ((), frozenset()))
        if len(old) <= len(notes) and notes[:len(old)] == old:
            new = notes[len(old):]
            if not new:
                return
        else:
            new, keys = notes, frozenset()
        alerts.matched_keys = []
        try:
            for note in new:
                self.observe(note, provisional_for=customer)
            keys = keys | frozenset(alerts.matched_keys)
        finally:
            alerts.matched_keys = None
        alerts.reconcile(customer, keys, now)
        if notes:
            self._seen_ahead[customer] = (notes, keys)
        else:
            self._seen_ahead.pop(customer, None)

    # -- agents ---------------------------------------------------------------

    def agents_changed(self, agents, now: int, book: KpiBook) -> None:
        """Re-read the live KPIs the rules need for these agents (as of `now`) and
        re-assert each agent's fact where a value changed."""
        rules = self._by_kind.get("agent")
        if not rules:
            return
        day = self.clock.day(now)
        for agent in agents:
            if agent is None:
                continue
            values = self._agent_values(agent, now, day, book)
            old = self._facts.get(agent)
            if old is not None and old[0] == values:
                continue
            fact = dict(values, id=f"agent:{agent}", sid=SESSION, seq=next(self._ids))
            if old is not None:
                self._host.retract_fact(self._host.ruleset, old[1])
            self._facts[agent] = (values, fact)
            self._judge(rules, self._host.matches(fact, keep=True), now,
                        lambda rule: _window_values(values, rule.prefix()))

    def tick(self, now: int, book: KpiBook | None = None) -> None:
        """Time passed: resolve single-event alerts past `resolve_after`, and look again
        at agents whose KPI alerts fire (a window slides, a day ends)."""
        self.alerts.tick(now)
        self.alerts.forget_resolved()
        if book is not None:
            self.agents_changed({a.agent_id for a in self.alerts.firing(
                {r.name for r in self._by_kind.get("agent", [])})}, now, book)

    def _agent_values(self, agent: str, now: int, day: str, book: KpiBook) -> dict:
        values: dict = {"kind": "agent", "agent_id": agent}
        for window, length in self._windows.items():
            needed = self._needed[window]
            if length is None:
                kpis = book.agent_kpis(agent, day if window == "today" else day[:7])
            else:
                kpis = self._sliding(agent, now, round(length * US))
            prefix = window_prefix(window, length)
            for name in needed:
                if kpis.get(name) is not None:
                    values[prefix + name] = kpis[name]
        return values

    def _sliding(self, agent: str, now: int, length: int) -> dict:
        return self._windows_of(agent)[length].at(now)

    def _windows_of(self, agent: str) -> dict[int, SlidingCounts]:
        windows = self._recent.get(agent)
        if windows is None:
            slow = self.params.slow_response_s
            windows = self._recent[agent] = {n: SlidingCounts(n, slow) for n in self._lengths}
        return windows

    # -- judging --------------------------------------------------------------

    def _judge(self, rules, hits: set[str], now: int, values_for, provisional_for: str | None = None) -> None:
        """Tell the alert book which watching rules matched (`values_for(rule)`: what the
        rule's alert shows) and which missed."""
        for rule in rules:
            if rule.name in hits:
                self.alerts.matched(rule, values_for(rule), now, provisional_for)
            else:
                self.alerts.missed(rule, values_for(rule), now)


def _window_values(values: dict, prefix: str) -> dict:
    """An agent's fact as one rule sees it: its window's KPIs by their plain names."""
    return {"agent_id": values["agent_id"], **{k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}}


class ConsequenceEngine:
    """The month-end rules (SPEC §5 step 7): each ranked agent's standing is one fact,
    asserted and retracted; `decide` says which rules matched whom."""

    def __init__(self, rules) -> None:
        self.rules = rules
        self._host = _Host("cspulse_month_end", rules.rules)

    def decide(self, standings: list[dict]) -> list[tuple[str, str]]:
        """[(agent_id, rule name)] in the order of the standings, then of the rule file."""
        order = [r.name for r in self.rules.rules]
        out = []
        for i, values in enumerate(standings):
            fact = {k: v for k, v in values.items() if v is not None}
            fact.update(kind="standing", id=f"s{i}", sid=SESSION)
            hits = self._host.matches(fact)
            out += [(values["agent_id"], name) for name in order if name in hits]
        return out
