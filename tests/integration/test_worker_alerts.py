"""The worker's alerts against replay's for one simulated file, on the real broker:
the same keys, firing times and states for every rule about single events and waits,
published to cs.alerts and counted on /metrics."""

import dataclasses
import json
import time
import urllib.request
from datetime import datetime, timezone

from sqlmodel import Session

from cspulse import embedded
from cspulse.core import Params
from cspulse.core.shopclock import to_us
from rules.load import load_rules
from store import repo
from test_produce import read_topic
from test_worker import replayed, simulated, workers  # noqa: F401  (fixture)

RULES = load_rules()
# Rules over agents' KPIs are judged at another cadence (each refresh, not each 5 s of
# event time) and so may fire at other moments; the rest must agree exactly.
COMPARED = {"slow_response", "customer_waiting", "complaint_received", "abnormal_order"}


def stored_alerts(url):
    try:
        with Session(repo.connect(url, must_exist=True)) as s:
            return repo.read_alerts(session=s)
    except Exception:   # not created yet
        return []


def replayed_alerts(path, tmp_path, until):
    url = f"sqlite:///{tmp_path / 'replay-alerts.db'}"
    params = dataclasses.replace(Params(), wait_checks_s=RULES.wait_checks_s)
    embedded.replay(embedded.open_sources([str(path)]), engine=repo.connect(url), params=params, until=until,
                    rules=RULES)
    return stored_alerts(url)


def shape(alerts):
    return sorted((a.key, a.fired_at, a.state) for a in alerts if a.rule in COMPARED)


def test_worker_alerts_equal_replay_and_go_to_cs_alerts_and_metrics(workers, tmp_path):  # noqa: F811
    path = simulated(tmp_path, days=2, traffic=40)
    expected_kpis = replayed(path, tmp_path)
    workers.produce(path)
    workers.start()
    assert workers.wait_for(expected_kpis) == expected_kpis
    # the worker judges as of now; so does a replay told to evaluate as of now
    expected = shape(replayed_alerts(path, tmp_path, to_us(datetime.now(timezone.utc))))
    assert {k.split("|")[0] for k, _, _ in expected} >= {"slow_response", "customer_waiting", "complaint_received"}
    deadline, got = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        got = shape(stored_alerts(workers.db))
        if got == expected:
            break
        time.sleep(1)
    assert got == expected, (sorted(set(got) - set(expected))[:5], sorted(set(expected) - set(got))[:5])
    published = [json.loads(r.value) for r in read_topic(workers.kafka, workers.prefix + "cs.alerts")]
    firings = {a["key"] for a in published if a["action"] == "firing"}
    assert {k for k, _, _ in expected} <= firings
    assert all(r["key"] and r["rule"] and r["severity"] for r in published)
    with urllib.request.urlopen(f"http://127.0.0.1:{workers.ports[0]}/metrics", timeout=5) as r:
        text = r.read().decode()
    complaints = sum(1 for k, _, _ in expected if k.startswith("complaint_received|"))
    assert f'cspulse_alerts_total{{rule="complaint_received",severity="critical"}} {complaints:.1f}' in text
    assert 'cspulse_alerts_firing{rule="customer_waiting",severity="critical"}' in text
