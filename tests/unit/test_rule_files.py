"""Rule files are data: each kind of mistake is one line naming the file, the rule and
the problem, and nothing in a file can run code."""

import json
from pathlib import Path

import pytest

from rules.load import DEFAULT_RULES, SCHEMA_PATH, RuleFileError, load_rules

GOOD = """
rules:
  - name: slow
    watch: response
    when: {response_s: {">": 100}}
    severity: warning
    message: "{agent_id} took {response_s:.0f} s"
"""


def check(tmp_path: Path, text: str) -> str:
    f = tmp_path / "r.yaml"
    f.write_text(text)
    with pytest.raises(RuleFileError) as e:
        load_rules(f)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{f}: ")
    return message.removeprefix(f"{f}: ")


def test_the_default_file_and_a_minimal_file_load(tmp_path):
    assert len(load_rules(DEFAULT_RULES).rules) == 7
    (tmp_path / "ok.yaml").write_text(GOOD)
    rule, = load_rules(tmp_path / "ok.yaml").rules
    assert (rule.name, rule.repeat_s) == ("slow", 30 * 60)      # the default repeat_interval


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("severity:", "severty:"),
     "rule 'slow': Additional properties are not allowed ('severty' was unexpected)"),
    (GOOD.replace('">"', '"=>"'), "rule 'slow': when.response_s: Additional properties are not allowed ('=>' was unexpected)"),
    (GOOD.replace("severity: warning", "severity: urgent"), "rule 'slow': severity: 'urgent' is not one of ['info', 'warning', 'critical']"),
    (GOOD.replace("watch: response", "watch: agent").replace("response_s: {", "avg_response_time: {"),
     "rule 'slow': when: unknown field 'avg_response_time' for watch: agent (window today)"),
    (GOOD.replace("{response_s:.0f}", "{response_s:.0f"), "rule 'slow': message: malformed template"),
    (GOOD.replace("{response_s:.0f}", "{response_s.__class__}"),
     "rule 'slow': message: '{response_s.__class__}' must name a field, plainly"),
    (GOOD.replace("{response_s:.0f}", "{customer_id:.0f}"), "rule 'slow': message: '{customer_id:.0f}' does not fit customer_id"),
    (GOOD.replace("{response_s:.0f}", "{response_s!r}"), "rule 'slow': message: '{response_s!r}': conversions are not allowed"),
    (GOOD.replace("{response_s:.0f}", "{order_id}"), "rule 'slow': message: unknown field 'order_id' for watch: response"),
    (GOOD + GOOD.replace("rules:\n", ""), "rule 'slow': a second rule with this name"),
    (GOOD.replace("watch: response", "watch: wait").replace("response_s", "waited_s"),
     "rule 'slow': after: a rule that watches 'wait' says how long"),
    (GOOD.replace("severity:", "window: 30m\n    severity:"), "rule 'slow': window: only a rule that watches 'agent'"),
    ("rules: [\n", "not valid YAML"),
    ("rules: []\n", "rules: [] should be non-empty"),
])
def test_each_mistake_is_one_line_naming_the_rule(tmp_path, text, expected):
    assert check(tmp_path, text).startswith(expected)


def test_a_rule_file_cannot_run_code(tmp_path):
    # YAML's python tags would build objects; the safe loader refuses them
    marker = tmp_path / "ran"
    evil = GOOD.replace('"{agent_id} took {response_s:.0f} s"',
                        f"!!python/object/apply:os.system ['touch {marker}']")
    assert check(tmp_path, evil).startswith("not valid YAML")
    assert not marker.exists()


def test_the_published_schema_is_valid_json_schema():
    import jsonschema
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


# -- the month-end files ------------------------------------------------------

from rules.month_end import DEFAULT_MONTH_END, DEFAULT_SCORECARD, load_any  # noqa: E402

SCORECARD = DEFAULT_SCORECARD.read_text()
MONTH_END = DEFAULT_MONTH_END.read_text()


def check_any(tmp_path: Path, text: str) -> str:
    f = tmp_path / "m.yaml"
    f.write_text(text)
    with pytest.raises(RuleFileError) as e:
        load_any(f)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{f}: ")
    return message.removeprefix(f"{f}: ")


def test_the_default_month_end_files_load():
    card, rules = load_any(DEFAULT_SCORECARD), load_any(DEFAULT_MONTH_END)
    assert sum(s.weight for s in card.kpis) == 100 and card.min_served_customers == 30
    assert [r.kind for r in rules.rules] == ["bonus", "deduction", "improvement_plan", "reassignment_recommendation"]


@pytest.mark.parametrize("text, expected", [
    (SCORECARD.replace("churn_rate:", "churn:"), "kpis: unknown KPI 'churn'"),
    (SCORECARD.replace("{weight: 10, relative: team_max}", "{weight: 10, relative: team_max, best: 1}", 1),
     "kpis.order_amount: "),
    (SCORECARD.replace("worst: 0.60, best: 0.20", "worst: 0.60"), "kpis.churn_rate: "),
    (SCORECARD.replace("worst: 0.60, best: 0.20", "worst: 0.2, best: 0.2"),
     "kpis: churn_rate: worst and best are both 0.2"),
    (SCORECARD.replace("weight: 20,", "weight: -20,"), "kpis.inquiry_conversion_rate.weight: -20 is less than or equal"),
    (SCORECARD.replace("manager: {kpi: 60,", "manager: {kpis: 60,"), "manager: Additional properties"),
    (SCORECARD.replace("{min_served_customers: 30}", "{min_served_customers: many}"),
     "eligibility.min_served_customers: 'many' is not of type 'integer'"),
])
def test_each_scorecard_mistake_is_one_line(tmp_path, text, expected):
    assert check_any(tmp_path, text).startswith(expected)


@pytest.mark.parametrize("text, expected", [
    (MONTH_END.replace("kind: bonus", "kind: gift"), "rule 'bonus_for_first': kind: 'gift' is not one of"),
    (MONTH_END.replace("    amount: 100\n    message: \"ranked 1st", "    message: \"ranked 1st"),
     "rule 'bonus_for_first': 'amount' is a required property"),
    (MONTH_END.replace("kind: reassignment_recommendation", "kind: reassignment_recommendation\n    amount: 5"),
     "rule 'reassignment_after_three_lasts': amount: only a bonus or a deduction has an amount"),
    (MONTH_END.replace("due_after: 7d", "due_after: a week"), "rule 'improvement_plan_for_bottom_two': due_after: 'a week' does not match"),
    (MONTH_END.replace("{rank: {\"==\": 1}}", "{place: {\"==\": 1}}"),
     "rule 'bonus_for_first': when: unknown field 'place'; known: agent_id, rank"),
    (MONTH_END.replace("{rank: {\"==\": 1}}", "{rank: {\"~\": 1}}"), "rule 'bonus_for_first': when.rank: Additional properties"),
    (MONTH_END.replace("{total:.2f}: bonus", "{total:%}: bonus{"), "rule 'bonus_for_first': message: malformed template"),
    (MONTH_END.replace("{last_streak} months", "{streak} months"),
     "rule 'reassignment_after_three_lasts': message: unknown field 'streak' for watch: standing"),
])
def test_each_month_end_rule_mistake_is_one_line_naming_the_rule(tmp_path, text, expected):
    assert check_any(tmp_path, text).startswith(expected)


def test_the_month_end_schemas_are_valid_json_schema():
    import jsonschema
    for name in ("scorecard.schema.json", "month_end.schema.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.with_name(name).read_text()))
