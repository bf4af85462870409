"""A live customer left waiting, with no further event: the worker's timer fires
`customer_waiting`, delivers it to cs.alerts, a JSON webhook and a real Alertmanager,
and resolves it everywhere when the agent replies."""

import json
import threading
import time
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer

from conftest import am_alerts
from rules.load import DEFAULT_RULES
from test_produce import read_topic
from test_webhooks import Receiver, wait_for
from test_worker import workers  # noqa: F401  (fixture)

KEY = "customer_waiting||conv-live"


def line(**fields):
    return json.dumps({"ts": datetime.now(timezone.utc).isoformat(), **fields}) + "\n"


def test_a_waiting_customer_alerts_with_no_further_event_and_resolves_at_the_reply(
        workers, alertmanager, tmp_path):  # noqa: F811
    rules = tmp_path / "rules.yaml"     # the default rules, with 2 s for 180 s
    rules.write_text(DEFAULT_RULES.read_text().replace("after: 180s", "after: 2s"))
    Receiver.bodies = []
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    workers.env.update(CSPULSE_RULES_FILE=str(rules), CSPULSE_SERVICE_HOURS="00:00-24:00", CSPULSE_SHOP_ID="shop-t",
                       CSPULSE_WEBHOOKS=f"json=http://127.0.0.1:{hook.server_port}/hook "
                                        f"alertmanager={alertmanager}/alerts")
    try:
        first = tmp_path / "first.jsonl"
        first.write_text(line(event_id="m1", type="message", conversation_id="conv-live", customer_id="c-live",
                              sender="customer"))
        workers.produce(first)
        workers.start()

        def published(action):
            return [a for a in (json.loads(r.value) for r in read_topic(workers.kafka, workers.prefix + "cs.alerts"))
                    if a["key"] == KEY and a["action"] == action]

        assert wait_for(lambda: published("firing"), 90), "no customer_waiting on cs.alerts"
        alert = published("firing")[0]
        assert (alert["rule"], alert["severity"], alert["state"]) == ("customer_waiting", "critical", "firing")
        assert alert["message"] == "customer c-live has waited 2 s for a reply (conv-live)"
        assert wait_for(lambda: any(a["key"] == KEY for b in Receiver.bodies for a in b["alerts"]), 30)
        assert wait_for(lambda: any(a["labels"].get("rule") == "customer_waiting" for a in am_alerts(alertmanager)), 30)
        am, = [a for a in am_alerts(alertmanager) if a["labels"]["rule"] == "customer_waiting"]
        assert am["labels"]["shop"] == "shop-t" and am["labels"]["subject"] == "conv-live"

        reply = tmp_path / "reply.jsonl"
        reply.write_text(line(event_id="m2", type="message", conversation_id="conv-live", customer_id="c-live",
                              sender="agent", agent_id="agent-07"))
        workers.produce(reply)
        assert wait_for(lambda: published("resolved"), 60), "the reply did not resolve it"
        assert wait_for(lambda: not any(a["labels"].get("rule") == "customer_waiting"
                                        for a in am_alerts(alertmanager)), 30)
        assert [a["action"] for b in Receiver.bodies for a in b["alerts"] if a["key"] == KEY][-1] == "resolved"
    finally:
        hook.shutdown()
