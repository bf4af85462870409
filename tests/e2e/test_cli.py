import json
import subprocess
import sys
from pathlib import Path

import pytest

from cspulse.core import KPIS, Pipeline

CSPULSE = str(Path(sys.executable).parent / "cspulse")


def cli(*args, stdin=None, check=True):
    result = subprocess.run([CSPULSE, *args], capture_output=True, text=True, input=stdin, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def month_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "events.jsonl"
    cli("simulate", "--agents", "4", "--days", "5", "--seed", "11", "--traffic", "40",
        "--duplicates", "0.01", "--bad", "0.005", "-o", str(path))
    return path


def kpis_json(db, period, *extra):
    return json.loads(cli("kpis", "--period", period, "--json", "--db", db, *extra).stdout)


def test_simulate_replay_kpis_json_matches_the_core(month_file, tmp_path, store_url):
    db = store_url      # SQLite, then PostgreSQL
    out = cli("replay", str(month_file), "--db", db).stdout
    assert "events read" in out and "rejected" in out
    got = kpis_json(db, "2026-11")
    assert set(got) == {"period", "agents", "shop", "goals"}
    assert got["period"] == "2026-11"
    assert sorted(got["agents"]) == ["agent-01", "agent-02", "agent-03", "agent-04"]
    expected = Pipeline().run(month_file.read_bytes().splitlines())
    for agent, values in got["agents"].items():
        assert list(values) == list(KPIS)
        assert values == expected.book.kpis(agent, "2026-11"), agent
    assert got["shop"] == expected.book.kpis(None, "2026-11")
    assert isinstance(got["shop"]["orders"], int)
    assert 0 <= got["shop"]["inquiry_conversion_rate"] <= 1
    # the simulator sets two goals a month for every agent
    assert set(got["goals"]["agent-01"]) == {"inquiry_conversion_rate", "avg_response_time_s"}


def test_day_period_and_one_agent(month_file, tmp_path):
    db = f"sqlite:///{tmp_path / 'a.db'}"
    cli("replay", str(month_file), "--db", db)
    day = kpis_json(db, "2026-11-02", "--agent", "agent-02")
    assert list(day["agents"]) == ["agent-02"]
    table = cli("kpis", "--period", "2026-11", "--agent", "agent-02", "--db", db).stdout
    assert "inquiry_conversion_rate" in table and "询单转化率" in table


def test_replaying_the_same_file_twice_changes_no_kpi(month_file, tmp_path, store_url):
    db = store_url      # SQLite, then PostgreSQL
    cli("replay", str(month_file), "--db", db)
    first = kpis_json(db, "2026-11")
    again = cli("replay", str(month_file), "--db", db).stdout
    assert "applied" in again
    assert kpis_json(db, "2026-11") == first


def test_a_second_replay_continues_where_the_first_stopped(month_file, tmp_path):
    lines = month_file.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "1.jsonl").write_bytes(b"".join(lines[:half]))
    (tmp_path / "2.jsonl").write_bytes(b"".join(lines[half:]))
    split, whole = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 'w.db'}"
    cli("replay", str(tmp_path / "1.jsonl"), "--db", split)
    cli("replay", "-", "--db", split, stdin=(tmp_path / "2.jsonl").read_text())
    cli("replay", str(month_file), "--db", whole)
    assert kpis_json(split, "2026-11") == kpis_json(whole, "2026-11")


def test_simulate_is_deterministic_for_a_seed(tmp_path):
    a = cli("simulate", "--agents", "2", "--days", "2", "--seed", "3", "--traffic", "20").stdout
    b = cli("simulate", "--agents", "2", "--days", "2", "--seed", "3", "--traffic", "20").stdout
    c = cli("simulate", "--agents", "2", "--days", "2", "--seed", "4", "--traffic", "20").stdout
    assert a == b and a != c
    types = {json.loads(line)["type"] for line in a.splitlines()}
    assert {"message", "order_created", "order_paid", "qa_check", "goal_set", "self_review",
            "manager_review"} <= types


@pytest.mark.parametrize("args,message", [
    (["kpis", "--period", "2026-13"], "--period: '2026-13' is not a day YYYY-MM-DD or a month YYYY-MM"),
    (["kpis", "--period", "November"], "--period: 'November' is not a day"),
    (["replay", "missing.jsonl"], "missing.jsonl: no such file"),
    (["replay", "-", "--until", "soon"], "--until: 'soon' is not an ISO-8601 time"),
    (["replay", "-", "--until", "2026-11-30T00:00:00"], "--until: '2026-11-30T00:00:00' has no UTC offset"),
    (["kpis", "--period", "2026-11", "--db", "nonsense://x"], "--db: not a database URL"),
    (["simulate", "--days", "0"], "--days: must be at least 1"),
    (["kpis", "--period", "2026-11", "--db", "sqlite:///no/such.db"], "sqlite:///no/such.db: no such database"),
    (["simulate", "--start", "2026-02-30"], "--start: '2026-02-30' is not a date"),
])
def test_bad_arguments_get_one_line_and_no_traceback(args, message, tmp_path):
    result = cli(*args, "--db", f"sqlite:///{tmp_path / 'x.db'}", check=False) if args[0] == "replay" \
        else cli(*args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_setting_in_the_environment_is_one_line(tmp_path):
    import os
    result = subprocess.run([CSPULSE, "kpis", "--period", "2026-11"], capture_output=True, text=True,
                            env={**os.environ, "CSPULSE_TIMEZONE": "Mars/Olympus"})
    assert result.returncode != 0
    assert "timezone: unknown time zone 'Mars/Olympus'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_refuses_other_kpi_settings_naming_them(tmp_path):
    import os
    db = f"sqlite:///{tmp_path / 'settings.db'}"
    line = json.dumps({"type": "message", "event_id": "m1", "ts": "2026-11-03T10:00:00+08:00",
                       "conversation_id": "v1", "customer_id": "c1", "sender": "customer"})
    cli("replay", "-", "--db", db, stdin=line + "\n")
    for env, named in ((("CSPULSE_SLOW_RESPONSE_S", "50"),), "CSPULSE_SLOW_RESPONSE_S 100 -> 50"), \
                      ((("CSPULSE_CLOSE_DAY", "5"),), "CSPULSE_CLOSE_DAY (days a month's orders are kept) 2 -> 5"):
        result = subprocess.run([CSPULSE, "replay", "-", "--db", db], input=line + "\n", capture_output=True,
                                text=True, env={**os.environ, **dict(env)}, timeout=300)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"cspulse replay: this database was built with other KPI settings ({named}); "
            "use a fresh --db or the same settings"]


def alerts_json(db, *extra):
    return json.loads(cli("alerts", "--json", "--db", db, *extra).stdout)


def test_replay_stores_the_alerts_a_dry_run_shows_and_a_second_replay_adds_none(month_file, tmp_path, store_url):
    db = store_url      # SQLite, then PostgreSQL
    cli("replay", str(month_file), "--db", db)
    stored = alerts_json(db)
    assert stored, "a simulated month has slow responses and complaints"
    for field in ("key", "rule", "agent_id", "severity", "state", "fired_at", "message"):
        assert all(field in a for a in stored), field
    assert len({a["key"] for a in stored}) == len(stored)
    dry = json.loads(cli("rules", "check", "rules/default.yaml", "--events", str(month_file), "--json").stdout)
    key = lambda a: (a["key"], a["fired_at"])  # noqa: E731
    assert sorted(map(key, dry)) == sorted(map(key, stored))
    cli("replay", str(month_file), "--db", db)                 # every event a duplicate now
    assert alerts_json(db) == stored
    # (the filters: an agent's alerts in one state; at the end of the month most have
    # resolved, customer_waiting too, once a wait is counted unanswered)
    someone, state = next((a["agent_id"], a["state"]) for a in stored if a["agent_id"])
    chosen = alerts_json(db, "--state", state, "--agent", someone)
    assert chosen == [a for a in stored if a["state"] == state and a["agent_id"] == someone]
    assert 0 < len(chosen) < len(stored)
    assert cli("alerts", "--db", db).stdout.count("│") > 10   # the table


def test_rules_check_says_valid_or_one_line_what_is_wrong(tmp_path):
    assert "7 rules, valid" in cli("rules", "check", "rules/default.yaml").stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    watch: response\n    when: {nope: {'>': 1}}\n"
                   "    severity: warning\n    message: hi\n")
    result = cli("rules", "check", str(bad), check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"cspulse rules: {bad}: rule 'x': when: unknown field 'nope' for watch: response; "
                                     "known: agent_id, customer_id, conversation_id, response_s, first")
