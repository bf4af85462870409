"""/metrics of a running worker: the live KPIs of replay, our counters, and a clean promtool lint."""

import json
import subprocess
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families

from cspulse.core import Params, Pipeline
from cspulse.core.shopclock import to_us
from streams.metrics import KPI_METRICS
from test_worker import CSPULSE, workers  # noqa: F401  (the fixture)

# No timer may come due while the test runs, or replay's "now" and the worker's would
# differ: inquiry windows of 1000 h, unanswered waits of 10^6 s.
SLOW_TIMERS = {"CSPULSE_ATTRIBUTION_HOURS": "1000", "CSPULSE_UNANSWERED_AFTER_S": "1000000"}
PARAMS = Params(attribution_hours=1000, unanswered_after_s=1_000_000)
FAMILY = {f"cspulse_{scope}_{name}": kpi for kpi, name in KPI_METRICS.items() for scope in ("agent", "shop")}


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def live_kpis(text):
    """{(agent or None, window): {kpi: value}} from the cspulse_agent_* and cspulse_shop_* gauges."""
    out = {}
    for family in text_string_to_metric_families(text):
        kpi = FAMILY.get(family.name)
        for sample in family.samples if kpi else ():
            key = (sample.labels.get("agent_id"), sample.labels["window"])
            out.setdefault(key, {})[kpi] = sample.value
    return out


def counters(text, name):
    return {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


def recent_events(tmp_path):
    """Yesterday and today (shop time) up to five minutes ago, with duplicates."""
    now = datetime.now(timezone.utc)
    yesterday = (now.astimezone(ZoneInfo(PARAMS.timezone)) - timedelta(days=1)).date()
    path = tmp_path / "sim.jsonl"
    subprocess.run([CSPULSE, "simulate", "--agents", "3", "--days", "2", "--traffic", "40", "--start",
                    yesterday.isoformat(), "--duplicates", "0.02", "-o", str(path)], check=True, capture_output=True)
    cutoff = now - timedelta(minutes=5)
    lines = [line for line in path.read_text().splitlines()
             if datetime.fromisoformat(json.loads(line)["ts"]) < cutoff]
    out = tmp_path / "recent.jsonl"
    out.write_text("\n".join(lines) + "\n")
    return out, lines


def test_metrics_show_the_live_kpis_of_replay_and_pass_promtool(workers, tmp_path):
    path, lines = recent_events(tmp_path)
    now = to_us(datetime.now(timezone.utc))
    replay = Pipeline(PARAMS).run(lines, until=now)
    today = replay.clock.day(now)
    expected = {key: {k: float(v) for k, v in values.items() if v is not None}
                for key, values in replay.book.windows(today).items()}
    assert sum(who is not None for who, _ in expected) == 3 * 2      # 3 agents, today and month

    workers.env.update(SLOW_TIMERS)
    workers.produce(path)
    workers.start()
    deadline, got, text = time.monotonic() + 120, None, ""
    while time.monotonic() < deadline:
        try:
            text = scrape(workers.ports[-1])
        except OSError:      # the web server is not up yet
            time.sleep(0.5)
            continue
        got = live_kpis(text)
        if got == expected:
            break
        time.sleep(0.5)
    assert got == expected

    # events by topic and type, duplicates: exactly what the replay read
    events = counters(text, "cspulse_events_total")
    assert {dict(k)["type"]: v for k, v in events.items()} == replay.stats.types
    assert {dict(k)["topic"] for k in events} <= {"cs.chat", "cs.orders", "cs.feedback", "cs.reviews"}
    assert counters(text, "cspulse_duplicate_events_total") == {(): replay.stats.duplicates}
    assert replay.stats.duplicates > 0

    # our metrics lint clean (Faust's own names do not, and are not ours to rename)
    ours = "\n".join(line for line in text.splitlines()
                     if line.startswith(("cspulse_", "# HELP cspulse_", "# TYPE cspulse_"))) + "\n"
    lint = subprocess.run(["promtool", "check", "metrics"], input=ours, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "faust_messages_received_total" in text     # Faust's sensor shares the registry
