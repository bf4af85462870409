"""Rule files: read (YAML, safe loader: no tags, no code), validate, compile.

A file is checked against the published schema (`rules/schema.json`) and then
for meaning: every field a condition or a message names must exist for what the
rule watches (an observation's fields, or the KPI names of SPEC §3 for an agent),
and a message may only name fields (no attributes, indexes or conversions), so
a rule file can never run code.  Any mistake is one `RuleFileError` line naming
the file, the rule and the problem.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource

from cspulse.core.kpi_names import KPI_NAMES

SCHEMA_PATH = Path(__file__).with_name("schema.json")
DEFAULT_RULES = Path(__file__).with_name("default.yaml")

# What each observation kind carries (see cspulse/core/ledger.py `Note`), with a sample
# value of its type to try message templates on.
FIELDS: dict[str, dict[str, object]] = {
    "response": {"agent_id": "a", "customer_id": "c", "conversation_id": "v", "response_s": 1.5, "first": True},
    "wait": {"agent_id": "a", "customer_id": "c", "conversation_id": "v", "waited_s": 1.5, "open": True},
    "complaint": {"agent_id": "a", "customer_id": "c", "conversation_id": "v", "category": "x", "event_id": "e"},
    "order_flagged": {"agent_id": "a", "customer_id": "c", "order_id": "o", "reason": "x", "amount": 1.5},
    "plan": {"agent_id": "a", "period": "2026-11", "due": "2026-12-08T00:30:00+08:00", "state": "overdue"},
}
# An agent's KPIs over a sliding window: what its recent notes tell.
SLIDING_KPIS = ("responses", "avg_response_time_s", "slow_responses", "complaints", "abnormal_orders")
# Which part of an alert's key names the thing it is about, besides the rule and the agent.
SUBJECT = {"response": "conversation_id", "wait": "conversation_id", "complaint": "conversation_id",
           "order_flagged": "order_id", "plan": "period", "agent": None}
_OPS = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte", "!=": "$neq"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RuleFileError(Exception):
    """A rule file that cannot be used; the message is one line."""


def window_prefix(window: str, length_s: float | None) -> str:
    """The prefix of a window's fields in an agent's fact: "today__", "month__", "w1800__"."""
    return f"w{length_s:g}__" if length_s else f"{window}__"


def render(message: str, values: dict) -> str:
    """A checked message template with the subject's values; a value without data reads "n/a"."""
    out = []
    for literal, field, spec, _ in string.Formatter().parse(message):
        out.append(literal)
        if field is not None:
            value = values.get(field)
            out.append("n/a" if value is None else format(value, spec or ""))
    return "".join(out)


@dataclass(frozen=True)
class Rule:
    name: str
    watch: str
    when: dict
    severity: str
    message: str
    repeat_s: float
    window: str | None = None        # watch: agent: "today", "month" or a sliding window like "30m"
    window_s: float | None = None    # the sliding window's length
    after_s: float | None = None     # watch: wait: the wait check
    resolve_after_s: float | None = None
    description: str = ""

    def fields(self) -> dict[str, object]:
        """The fields a condition or message may name, with sample values."""
        if self.watch != "agent":
            return FIELDS[self.watch]
        kpis = SLIDING_KPIS if self.window_s is not None else KPI_NAMES
        return {"agent_id": "a", **{k: 1.5 for k in kpis}}

    def prefix(self) -> str:
        """How the agent fact names this rule's window's fields."""
        return "" if self.watch != "agent" else window_prefix(self.window, self.window_s)

    def compiled(self) -> dict:
        """The condition in durable-rules' JSON syntax, with the rule's own implied terms."""
        terms = [{"kind": self.watch}, _compile(self.when, self.prefix())]
        if self.after_s is not None:
            terms.append({"$gte": {"waited_s": self.after_s}})
        return {"$and": terms}

    def render(self, values: dict) -> str:
        return render(self.message, values)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str

    def watching(self, kind: str) -> list[Rule]:
        return [r for r in self.rules if r.watch == kind]

    @property
    def wait_checks_s(self) -> tuple[float, ...]:
        return tuple(sorted({r.after_s for r in self.rules if r.after_s is not None}))

    @property
    def agent_windows(self) -> dict[str, float | None]:
        """The windows agent rules use: name -> sliding length in seconds (None: today/month)."""
        return {r.window: r.window_s for r in self.rules if r.watch == "agent"}

    def needed(self, window: str) -> set[str]:
        """The KPIs the rules read over `window` (conditions and messages)."""
        out: set[str] = set()
        for r in self.rules:
            if r.watch == "agent" and r.window == window:
                out |= _names(r.when) | _template_fields(r.message)
        return out - {"agent_id"}


def seconds(duration: str) -> float:
    return float(duration[:-1]) * _UNITS[duration[-1]]


def read_yaml(path: str | Path):
    """A YAML file's data, safely (no tags, no code); RuleFileError (one line) if unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RuleFileError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RuleFileError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None


def check_schema(data, schema: str, source: str, item: str = "rules") -> None:
    """Validate against one of the published schemas beside this module (they may refer
    to each other); the best error as one line naming the file and the rule."""
    validator = jsonschema.Draft202012Validator(_schemas()[schema], registry=_registry())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise RuleFileError(f"{source}: {_where(data, list(error.absolute_path), item)}{error.message}")


@cache
def _schemas() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in SCHEMA_PATH.parent.glob("*schema.json")}


@cache
def _registry() -> Registry:
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in _schemas().values())


def load_rules(path: str | Path = DEFAULT_RULES) -> RuleSet:
    """Read and validate a rule file; raise RuleFileError (one line) if anything is wrong."""
    return parse_rules(read_yaml(path), str(path))


def parse_rules(data, source: str) -> RuleSet:
    check_schema(data, SCHEMA_PATH.name, source)
    repeat = seconds(data.get("repeat_interval", "30m"))
    rules, names = [], set()
    for raw in data["rules"]:
        name = raw["name"]
        fail = lambda problem: RuleFileError(f"{source}: rule '{name}': {problem}")  # noqa: E731
        if name in names:
            raise fail("a second rule with this name")
        names.add(name)
        watch = raw["watch"]
        window = raw.get("window")
        if window is not None and watch != "agent":
            raise fail("window: only a rule that watches 'agent' has a window")
        if watch == "agent" and window is None:
            window = "today"
        if "after" in raw and watch != "wait":
            raise fail("after: only a rule that watches 'wait' has 'after'")
        if watch == "wait" and "after" not in raw:
            raise fail("after: a rule that watches 'wait' says how long the wait has been open (e.g. 180s)")
        rule = Rule(
            name=name, watch=watch, when=raw["when"], severity=raw["severity"], message=raw["message"],
            repeat_s=seconds(raw["repeat_interval"]) if "repeat_interval" in raw else repeat,
            window=window, window_s=seconds(window) if window not in (None, "today", "month") else None,
            after_s=seconds(raw["after"]) if "after" in raw else None,
            resolve_after_s=seconds(raw["resolve_after"]) if "resolve_after" in raw else None,
            description=raw.get("description", ""))
        known = rule.fields()
        for field in sorted(_names(rule.when)):
            if field not in known:
                raise fail(f"when: unknown field '{field}' for watch: {watch}"
                           f"{f' (window {window})' if watch == 'agent' else ''}; known: {', '.join(known)}")
        _check_template(rule, known, fail)
        rules.append(rule)
    return RuleSet(tuple(rules), source)


def _where(data, path: list, item: str = "rules") -> str:
    """'rule NAME: field: ' for an error inside a rule, from the schema error's path."""
    if len(path) >= 2 and path[0] == item and isinstance(path[1], int):
        raw = data[item][path[1]]
        name = raw.get("name") if isinstance(raw, dict) else None
        rest = ".".join(str(p) for p in path[2:])
        return (f"rule '{name}': " if name else f"rule #{path[1] + 1}: ") + (f"{rest}: " if rest else "")
    return f"{'.'.join(str(p) for p in path)}: " if path else ""


def _names(cond: dict) -> set[str]:
    out = set()
    for key, value in cond.items():
        if key in ("and", "or"):
            for c in value:
                out |= _names(c)
        else:
            out.add(key)
    return out


def _compile(cond: dict, prefix: str) -> dict:
    (key, value), = cond.items()
    if key in ("and", "or"):
        return {f"${key}": [_compile(c, prefix) for c in value]}
    field = key if key == "agent_id" else prefix + key
    terms = []
    for op, v in value.items():
        if op == "==":
            terms.append({field: v})
        elif op == "exists":
            terms.append({"$ex" if v else "$nex": {field: 1}})
        else:
            terms.append({_OPS[op]: {field: v}})
    return terms[0] if len(terms) == 1 else {"$and": terms}


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _template_fields(message: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(message) if f}


def _check_template(rule: Rule, known: dict, fail) -> None:
    try:
        parts = list(string.Formatter().parse(rule.message))
    except ValueError as e:
        raise fail(f"message: malformed template ({e})") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not _PLAIN.match(field):
            raise fail(f"message: '{{{field}}}' must name a field, plainly (no attributes, indexes or positions)")
        if conversion:
            raise fail(f"message: '{{{field}!{conversion}}}': conversions are not allowed")
        if field not in known:
            raise fail(f"message: unknown field '{field}' for watch: {rule.watch}; known: {', '.join(known)}")
        if "{" in (spec or ""):
            raise fail(f"message: '{{{field}:{spec}}}': nested fields are not allowed")
        try:
            format(known[field], spec or "")
        except (ValueError, TypeError) as e:
            raise fail(f"message: '{{{field}:{spec}}}' does not fit {field} ({e})") from None
