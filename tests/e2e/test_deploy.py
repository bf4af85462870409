"""The deployment files are right without a Docker engine: the compose file passes
`docker-compose config` (Debian's docker-compose, no engine needed), every image is
pinned, and Prometheus's and Alertmanager's own checkers accept their configs."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def tool(name):
    path = shutil.which(name)
    assert path, f"{name} is missing: deploy/system-deps.sh installs it"
    return path


def test_the_compose_file_is_valid():
    result = subprocess.run([tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_every_image_is_pinned_and_the_stack_is_complete():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "postgres", "worker", "prometheus", "alertmanager", "grafana"}
    for name, service in services.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]*\d[\w.-]*", image) and not image.endswith(":latest"), (name, image)
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            assert re.fullmatch(r"FROM [\w./-]+:\d[\w.-]*( AS \w+)?", line), line
    worker = services["worker"]["environment"]
    assert worker["CSPULSE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "alertmanager=http://alertmanager:9093/api/v2/alerts" in worker["CSPULSE_WEBHOOKS"]


def test_prometheus_and_alertmanager_accept_their_configs():
    for cmd in ([tool("promtool"), "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
                [tool("amtool"), "check-config", str(ROOT / "deploy/alertmanager/alertmanager.yml")]):
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["worker:6066"]


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards():
    sources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    source, = sources["datasources"]
    assert (source["type"], source["url"], source["uid"]) == ("prometheus", "http://prometheus:9090", "cspulse-prometheus")
    boards = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/cspulse.yml").read_text())
    assert boards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in compose["services"]["grafana"]["volumes"]


def test_the_dashboard_is_the_generators_output_with_units_and_variables():
    import importlib.util
    import json
    spec = importlib.util.spec_from_file_location("make_dashboard", ROOT / "deploy/grafana/make_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    board = json.loads((ROOT / "deploy/grafana/dashboards/cspulse.json").read_text())
    assert board == json.loads(json.dumps(module.build())), "run deploy/grafana/make_dashboard.py"
    assert [v["name"] for v in board["templating"]["list"]] == ["shop", "agent"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {"cspulse-prometheus"}
    units = {p["fieldConfig"]["defaults"].get("unit") for p in panels}
    assert {"s", "percentunit", "currencyCNY"} <= units
    titles = " ".join(p["title"] for p in panels)
    for needed in ("Inquiry conversion", "Avg response", "Customer loss", "Order amount", "Leaderboard",
                   "Alerts firing", "Events/s by topic", "Rejected", "Processing lag"):
        assert needed in titles, needed
    # thresholds match the alert rules: slow response at 100 s, refund ratio 20%
    by_title = {p["title"]: p for p in panels}
    steps = by_title["Avg response 平均响应时间"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"value": 100, "color": "red"}
    steps = by_title["Refunds 退款比例"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"value": 0.2, "color": "red"}


def _dropped(ours, theirs, path=""):
    """Paths in `ours` that did not survive a round trip through Grafana's types."""
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            return [f"{path}: not an object in Grafana's schema"]
        return [p for k, v in ours.items()
                for p in ([f"{path}.{k}"] if k not in theirs else _dropped(v, theirs[k], f"{path}.{k}"))]
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return [f"{path}: not the same list in Grafana's schema"]
        return [p for i, (a, b) in enumerate(zip(ours, theirs)) for p in _dropped(a, b, f"{path}[{i}]")]
    return []


def test_the_dashboard_fits_grafanas_own_schema():
    # grafana-foundation-sdk holds Grafana's dashboard schema (and each panel plugin's options
    # and field config) as Python types; a field it does not know is dropped on the way through
    # them, so a misspelt option or a field in the wrong place shows as a dropped path.
    from grafana_foundation_sdk.cog import plugins, runtime
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard
    plugins.register_default_plugins()
    board = json.loads((ROOT / "deploy/grafana/dashboards/cspulse.json").read_text())
    back = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert _dropped(board, back) == []
    types = {p["type"] for p in board["panels"]} - {"row"}
    assert {t for t in types if runtime.panelcfg_config(t) is None} == set(), "a panel type Grafana does not have"
    assert _dropped({"panels": [{"type": "stat", "options": {"colourMode": "value"}}]},
                    json.loads(json.dumps(Dashboard.from_json({"panels": [{"type": "stat", "options": {
                        "colourMode": "value"}}]}), cls=JSONEncoder))) == [".panels[0].options.colourMode"]
