"""The month-end files: the scorecard (`scorecard.yaml`) and the consequence rules
(`month_end.yaml`), read and validated like the alert rules: schema first, then
meaning, every mistake one `RuleFileError` line naming the file and the rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cspulse.core.kpi_names import KPI_NAMES
from cspulse.monthend.scoring import KpiScale, Scorecard

from .load import RuleFileError, _check_template, _compile, _names, check_schema, read_yaml, render, seconds

HERE = Path(__file__).parent
DEFAULT_SCORECARD = HERE / "scorecard.yaml"
DEFAULT_MONTH_END = HERE / "month_end.yaml"

# What a consequence rule sees of each ranked agent, with sample values for templates.
STANDING_FIELDS: dict[str, object] = {"agent_id": "a", "rank": 1, "rank_from_bottom": 1, "ranked": 3,
                                      "total": 72.5, "kpi_score": 70.25, "last_streak": 1}


@dataclass(frozen=True)
class ConsequenceRule:
    name: str
    when: dict
    kind: str
    message: str
    amount: float | None = None
    due_after_s: float | None = None
    description: str = ""
    watch = "standing"      # what it looks at (named in errors)

    def compiled(self) -> dict:
        """The condition in durable-rules' JSON syntax."""
        return {"$and": [{"kind": "standing"}, _compile(self.when, "")]}

    def render(self, values: dict) -> str:
        return render(self.message, values)


@dataclass(frozen=True)
class MonthEndRules:
    rules: tuple[ConsequenceRule, ...]
    min_ranked: int
    source: str


def load_scorecard(path: str | Path = DEFAULT_SCORECARD) -> Scorecard:
    """Read and validate a scorecard file (RuleFileError, one line, if anything is wrong)."""
    return parse_scorecard(read_yaml(path), str(path))


def parse_scorecard(data, source: str) -> Scorecard:
    check_schema(data, "scorecard.schema.json", source)
    scales = []
    for kpi, raw in data["kpis"].items():
        if kpi not in KPI_NAMES:
            raise RuleFileError(f"{source}: kpis: unknown KPI '{kpi}'; known: {', '.join(KPI_NAMES)}")
        if "relative" not in raw and raw["worst"] == raw["best"]:
            raise RuleFileError(f"{source}: kpis: {kpi}: worst and best are both {raw['best']}; they must differ")
        scales.append(KpiScale(kpi, raw["weight"], raw.get("worst"), raw.get("best"), "relative" in raw))
    comp, mgr = data["components"], data["manager"]
    for name, part in (("components", comp), ("manager", mgr)):
        if sum(part.values()) <= 0:
            raise RuleFileError(f"{source}: {name}: the weights add up to 0")
    return Scorecard(tuple(scales), comp["self_review"], comp["manager"], mgr["kpi"], mgr["qa"],
                     mgr["management"], mgr["manager_review"], data["eligibility"]["min_served_customers"],
                     source)


def load_month_end(path: str | Path = DEFAULT_MONTH_END) -> MonthEndRules:
    """Read and validate a consequence rule file (RuleFileError, one line, if anything is wrong)."""
    return parse_month_end(read_yaml(path), str(path))


def parse_month_end(data, source: str) -> MonthEndRules:
    check_schema(data, "month_end.schema.json", source, item="consequences")
    rules, names = [], set()
    for raw in data["consequences"]:
        name = raw["name"]
        fail = lambda problem: RuleFileError(f"{source}: rule '{name}': {problem}")  # noqa: E731
        if name in names:
            raise fail("a second rule with this name")
        names.add(name)
        if "amount" in raw and raw["kind"] not in ("bonus", "deduction"):
            raise fail(f"amount: only a bonus or a deduction has an amount, not {raw['kind']}")
        if "due_after" in raw and raw["kind"] != "improvement_plan":
            raise fail(f"due_after: only an improvement_plan has a due time, not {raw['kind']}")
        rule = ConsequenceRule(name, raw["when"], raw["kind"], raw["message"], raw.get("amount"),
                               seconds(raw["due_after"]) if "due_after" in raw else None,
                               raw.get("description", ""))
        for field in sorted(_names(rule.when)):
            if field not in STANDING_FIELDS:
                raise fail(f"when: unknown field '{field}'; known: {', '.join(STANDING_FIELDS)}")
        _check_template(rule, STANDING_FIELDS, fail)
        rules.append(rule)
    return MonthEndRules(tuple(rules), data.get("min_ranked", 3), source)


def load_any(path: str | Path):
    """Whichever of the three rule files `path` is (by its top-level keys): a RuleSet,
    a Scorecard or MonthEndRules, validated."""
    from .load import parse_rules
    data = read_yaml(path)
    if isinstance(data, dict) and "consequences" in data:
        return parse_month_end(data, str(path))
    if isinstance(data, dict) and "kpis" in data:
        return parse_scorecard(data, str(path))
    return parse_rules(data, str(path))
