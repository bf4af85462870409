"""Writes deploy/grafana/dashboards/cspulse.json, the board Grafana provisions.

    .venv/bin/python deploy/grafana/make_dashboard.py

The board is generated so that its many similar panels stay consistent (one place
for each KPI's unit and thresholds); the JSON is committed, and the test suite runs
every PromQL expression in it against a real Prometheus scraping a worker.
Several workers each show the whole shop, so every KPI query takes `max by`.
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "cspulse-prometheus"}
SEL = 'shop=~"$shop"'
AGENT_SEL = 'shop=~"$shop", agent_id=~"$agent"'

# (metric stem, title, Grafana unit, thresholds [(value, color)] with the first value None, higher is better)
HEADLINE = [
    ("inquiry_conversion_ratio", "Inquiry conversion 询单转化率", "percentunit", [(None, "red"), (0.35, "yellow"), (0.5, "green")]),
    ("avg_response_time_seconds", "Avg response 平均响应时间", "s", [(None, "green"), (60, "yellow"), (100, "red")]),
    ("first_response_time_seconds", "First response", "s", [(None, "green"), (60, "yellow"), (100, "red")]),
    ("churn_ratio", "Customer loss 客户流失率", "percentunit", [(None, "green"), (0.5, "yellow"), (0.65, "red")]),
    ("order_amount_cny", "Order amount 订单总金额", "currencyCNY", [(None, "blue")]),
    ("valid_order_ratio", "Valid orders 有效订单比重", "percentunit", [(None, "red"), (0.75, "yellow"), (0.85, "green")]),
    ("payment_ratio", "Paid 付款比例", "percentunit", [(None, "red"), (0.8, "yellow"), (0.9, "green")]),
    ("refund_ratio", "Refunds 退款比例", "percentunit", [(None, "green"), (0.1, "yellow"), (0.2, "red")]),
    ("complaint_ratio", "Complaints 投诉比重", "percentunit", [(None, "green"), (0.02, "yellow"), (0.05, "red")]),
    ("abnormal_order_ratio", "Abnormal orders 异常订单比重", "percentunit", [(None, "green"), (0.02, "yellow"), (0.05, "red")]),
]
UNITS = {stem: unit for stem, _, unit, _ in HEADLINE}


RESPONSE_STEPS = HEADLINE[1][3]


def per_agent(stem: str, window: str) -> str:
    """One KPI for every agent shown (`max by`: each worker reports the whole shop)."""
    return f'max by (agent_id) (cspulse_agent_{stem}{{window="{window}", {AGENT_SEL}}})'


def thresholds(steps):
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def panel(kind, title, targets, x, y, w, h, unit=None, steps=None, **extra):
    p = {"type": kind, "title": title, "datasource": DS, "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "targets": [dict(t, datasource=DS, refId=chr(65 + i)) for i, t in enumerate(targets)],
         "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if steps:
        p["fieldConfig"]["defaults"]["thresholds"] = thresholds(steps)
        p["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
    p.update(extra)
    return p


def row(title, y):
    return {"type": "row", "title": title, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "collapsed": False,
            "panels": []}


def build() -> dict:
    panels, y = [], 0
    for window, label in (("today", "Team today"), ("month", "Team month to date")):
        panels.append(row(label, y))
        y += 1
        for i, (stem, title, unit, steps) in enumerate(HEADLINE):
            panels.append(panel("stat", title, [{"expr": f'max(cspulse_shop_{stem}{{window="{window}", {SEL}}})'}],
                                (i % 5) * 24 // 5, y + (i // 5) * 4, 24 // 5, 4, unit, steps,
                                options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}))
        y += 8
    panels.append(row("Agents", y))
    y += 1
    table_targets = [{"expr": per_agent(stem, "month"), "format": "table", "instant": True} for stem, *_ in HEADLINE]
    overrides = [{"matcher": {"id": "byName", "options": f"Value #{chr(65 + i)}"},
                  "properties": [{"id": "displayName", "value": title}, {"id": "unit", "value": unit}]}
                 for i, (stem, title, unit, _) in enumerate(HEADLINE)]
    table = panel("table", "Agents, month to date", table_targets, 0, y, 24, 9,
                  transformations=[{"id": "merge", "options": {}},
                                   {"id": "organize", "options": {"excludeByName": {"Time": True}}}])
    table["fieldConfig"]["overrides"] = overrides
    panels.append(table)
    y += 9
    panels.append(panel("bargauge", "Leaderboard: order amount this month",
                        [{"expr": f'sort_desc({per_agent("order_amount_cny", "month")})',
                          "legendFormat": "{{agent_id}}", "instant": True}],
                        0, y, 8, 9, "currencyCNY", options={"orientation": "horizontal", "displayMode": "gradient"}))
    panels.append(panel("bargauge", "Leaderboard: inquiry conversion this month",
                        [{"expr": f'sort_desc({per_agent("inquiry_conversion_ratio", "month")})',
                          "legendFormat": "{{agent_id}}", "instant": True}],
                        8, y, 8, 9, "percentunit", HEADLINE[0][3], options={"orientation": "horizontal"}))
    panels.append(panel("bargauge", "Response time today by agent (avg, first)",
                        [{"expr": per_agent("avg_response_time_seconds", "today"),
                          "legendFormat": "{{agent_id}} avg", "instant": True},
                         {"expr": per_agent("first_response_time_seconds", "today"),
                          "legendFormat": "{{agent_id}} first", "instant": True}],
                        16, y, 8, 9, "s", RESPONSE_STEPS, options={"orientation": "horizontal"}))
    y += 9
    panels.append(panel("timeseries", "Response time today (avg per agent)",
                        [{"expr": per_agent("avg_response_time_seconds", "today"),
                          "legendFormat": "{{agent_id}}"}], 0, y, 12, 8, "s", RESPONSE_STEPS))
    panels.append(panel("timeseries", "Answered within 3 min today",
                        [{"expr": per_agent("response_within_3min_ratio", "today"),
                          "legendFormat": "{{agent_id}}"}], 12, y, 12, 8, "percentunit"))
    y += 8
    panels.append(row("Alerts", y))
    y += 1
    panels.append(panel("stat", "Alerts firing now", [{"expr": f'sum(max by (rule) (cspulse_alerts_firing{{{SEL}}}))'}],
                        0, y, 6, 7, "short", [(None, "green"), (1, "yellow"), (5, "red")]))
    panels.append(panel("bargauge", "Firing by rule", [{"expr": f'max by (rule) (cspulse_alerts_firing{{{SEL}}})',
                                                        "legendFormat": "{{rule}}", "instant": True}],
                        6, y, 8, 7, "short", [(None, "green"), (1, "red")]))
    panels.append(panel("timeseries", "Alerts fired per hour, by rule",
                        [{"expr": f'sum by (rule) (increase(cspulse_alerts_total{{{SEL}}}[1h]))',
                          "legendFormat": "{{rule}}"}], 14, y, 10, 7, "short"))
    y += 7
    panels.append(row("Pipeline health", y))
    y += 1
    panels.append(panel("timeseries", "Events/s by topic",
                        [{"expr": f'sum by (topic) (rate(cspulse_events_total{{{SEL}}}[$__rate_interval]))',
                          "legendFormat": "{{topic}}"}], 0, y, 8, 8, "ops"))
    panels.append(panel("timeseries", "Rejected and late events/s",
                        [{"expr": f'sum by (reason) (rate(cspulse_rejected_events_total{{{SEL}}}[$__rate_interval]))',
                          "legendFormat": "rejected: {{reason}}"},
                         {"expr": f'sum(rate(cspulse_late_events_total{{{SEL}}}[$__rate_interval]))',
                          "legendFormat": "late"}], 8, y, 8, 8, "ops"))
    panels.append(panel("timeseries", "Processing lag", [{"expr": f'max(cspulse_processing_lag_seconds{{{SEL}}})',
                                                          "legendFormat": "lag"}],
                        16, y, 8, 8, "s", [(None, "green"), (5, "yellow"), (60, "red")]))
    y += 8
    # max per worker, summed: each worker counts the partitions it holds
    panels.append(panel("stat", "Stalled input partitions (sought again; one that stays: restart the worker)",
                        [{"expr": f'sum(max by (instance) (cspulse_input_partitions_stalled{{{SEL}}}))'}],
                        0, y, 8, 4, "short", [(None, "green"), (1, "red")]))
    for i, p in enumerate(panels):
        p["id"] = i + 1
    return {
        "uid": "cspulse-overview", "title": "cspulse: customer service", "tags": ["cspulse"],
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "10s",
        "time": {"from": "now-6h", "to": "now"}, "timezone": "browser",
        "templating": {"list": [
            {"name": "shop", "type": "query", "datasource": DS, "label": "shop",
             "query": {"query": "label_values(cspulse_shop_responses, shop)", "refId": "shop"},
             "refresh": 2,
             "multi": False, "includeAll": False},
            {"name": "agent", "type": "query", "datasource": DS, "label": "agent",
             "query": {"query": 'label_values(cspulse_agent_responses{shop=~"$shop"}, agent_id)', "refId": "agent"},
             "refresh": 2,
             "multi": True, "includeAll": True, "allValue": ".*"},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "dashboards" / "cspulse.json"
    out.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
