"""Alert delivery to real HTTP receivers: a local JSON webhook (down for a while
first) and a real Alertmanager (Debian's prometheus-alertmanager) through its v2 API."""

import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from broker import free_port
from conftest import am_alerts
from cspulse.core.shopclock import to_us
from rules.alerts import AlertBook
from rules.delivery import WebhookSender
from rules.load import load_rules

RULES = {r.name: r for r in load_rules().rules}


def some_alerts(n, now=None):
    """n firing alerts and the resolution of the first, from the lifecycle itself."""
    t = now if now is not None else to_us(datetime(2026, 11, 3, 2, 0, tzinfo=timezone.utc))
    book = AlertBook()
    for i in range(n):
        book.matched(RULES["complaint_received"], {"agent_id": f"a{i}", "customer_id": f"c{i}",
                                                   "conversation_id": f"v{i}", "event_id": f"e{i}"}, t)
    book.missed(RULES["complaint_received"], {"agent_id": "a0", "conversation_id": "v0"}, t + 1)
    return book.drain()


class Receiver(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):
        Receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_for(condition, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_webhook_that_is_down_gets_everything_later_in_order_and_nothing_waits_for_it():
    port = free_port()
    Receiver.bodies = []
    sender = WebhookSender(f"http://127.0.0.1:{port}/hook", kind="json", shop="shop1", batch=2)
    deliveries = some_alerts(3)                      # 3 firing + 1 resolved
    started = time.perf_counter()
    sender.put(deliveries)
    assert time.perf_counter() - started < 0.05      # put only queues
    assert wait_for(lambda: sender.failures >= 2)    # the receiver is down: retried with backoff
    assert sender.pending == 4 and sender.sent == 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert wait_for(lambda: sender.sent == 4), sender.failures
        got = [a for body in Receiver.bodies for a in body["alerts"]]
        assert [(a["action"], a["key"]) for a in got] == [(d.action, d.alert["key"]) for d in deliveries]
        assert all(body["shop"] == "shop1" for body in Receiver.bodies)
        assert [len(body["alerts"]) for body in Receiver.bodies] == [2, 2]
    finally:
        sender.close()
        server.shutdown()


def test_alerts_appear_in_a_real_alertmanager_with_their_labels_and_annotations(alertmanager):
    now = round(time.time() * 1e6)
    sender = WebhookSender(f"{alertmanager}/alerts", kind="alertmanager", shop="shop1",
                           board_url="http://grafana.local/d/cspulse")
    try:
        sender.put(some_alerts(2, now=now))
        assert wait_for(lambda: sender.sent == 3)
    finally:
        sender.close()
    active = am_alerts(alertmanager)
    assert len(active) == 1                       # a0's complaint was resolved, a1's fires
    alert = active[0]
    assert alert["labels"] == {"alertname": "complaint_received", "rule": "complaint_received",
                               "severity": "critical", "shop": "shop1", "agent_id": "a1", "subject": "v1"}
    assert alert["annotations"]["message"] == "complaint from customer c1 credited to a1"
    assert alert["generatorURL"] == "http://grafana.local/d/cspulse"
    assert alert["status"]["state"] == "active"
