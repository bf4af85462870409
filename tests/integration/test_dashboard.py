"""The Grafana board against a real Prometheus (Debian's `prometheus`) scraping a
worker fed through the real broker: every PromQL expression in the dashboard JSON
returns at least one series, and the board's variables find their labels."""

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from kafka import KafkaProducer

from broker import free_port
from test_webhooks import wait_for
from test_worker import CSPULSE, workers  # noqa: F401  (fixture)

BOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "cspulse.json"


def scrape_ok(port, series):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return series in r.read().decode()
    except OSError:
        return False


def promql(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def board_exprs():
    board = json.loads(BOARD.read_text())
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_every_dashboard_query_returns_series_from_a_real_prometheus(workers, tmp_path):  # noqa: F811
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: deploy/system-deps.sh installs it"
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    events = tmp_path / "today.jsonl"
    subprocess.run([CSPULSE, "simulate", "--agents", "3", "--days", "1", "--start", today, "--traffic", "40",
                    "--seed", "5", "-o", str(events)], check=True, capture_output=True)
    workers.produce(events)
    producer = KafkaProducer(bootstrap_servers=workers.kafka)   # a bad message past produce's checks
    producer.send(workers.prefix + "cs.orders", key=b"c", value=b"{not json")
    producer.flush()
    workers.start()
    port = workers.ports[0]
    assert wait_for(lambda: scrape_ok(port, 'cspulse_shop_responses{window="today"}'), 120)

    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cspulse\n"
                      f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n        labels:\n"
                      "          shop: default\n")
    prom = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{web}"
    try:
        def scraped_enough():
            try:
                got = promql(base, 'count_over_time(up{job="cspulse"}[1m])')
                return got and float(got[0]["value"][1]) >= 8
            except OSError:
                return False
        assert wait_for(scraped_enough, 60), "Prometheus did not scrape the worker"
        empty = []
        for title, expr in board_exprs():
            query = expr.replace("$shop", "default").replace("$agent", ".*").replace("$__rate_interval", "30s")
            if not promql(base, query):
                empty.append(f"{title}: {query}")
        assert not empty, "queries with no series:\n" + "\n".join(empty)
        with urllib.request.urlopen(f"{base}/api/v1/label/agent_id/values", timeout=10) as r:
            assert json.loads(r.read())["data"] == ["agent-01", "agent-02", "agent-03"]
        with urllib.request.urlopen(f"{base}/api/v1/label/shop/values", timeout=10) as r:
            assert json.loads(r.read())["data"] == ["default"]
    finally:
        prom.terminate()
        prom.wait(timeout=20)
