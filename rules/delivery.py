"""Webhook delivery of the alert outbox: at least once, never blocking the caller.

`WebhookSender.put` only queues; a background thread posts each queued batch
to the receiver, in order, and retries with exponential backoff (0.5 s doubling
to 30 s) while the receiver is down or answers with an error, keeping everything
queued, so processing never waits on a webhook and nothing is lost while the
process runs.  Two formats: a plain JSON POST (`{"alerts": [...]}`, each alert
with its `action`: firing, repeat or resolved) and Alertmanager's v2 API
(`POST /api/v2/alerts`, a list of {labels, annotations, startsAt, endsAt}).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from datetime import datetime, timedelta

from .alerts import Delivery

log = logging.getLogger(__name__)
BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 30.0
# A firing alert Alertmanager has not heard about again is over after this long: it
# is re-sent at least every repeat_interval (30 min) while it holds.
ALERTMANAGER_VALID = timedelta(minutes=35)


def plain_json(deliveries: list[Delivery], shop: str) -> bytes:
    return json.dumps({"shop": shop, "alerts": [dict(d.alert, action=d.action) for d in deliveries]},
                      ensure_ascii=False).encode()


def alertmanager(deliveries: list[Delivery], shop: str, board_url: str = "") -> bytes:
    """Alertmanager v2 `postableAlerts`: labels identify an alert, annotations describe it."""
    out = []
    for d in deliveries:
        a = d.alert
        labels = {"alertname": a["rule"], "rule": a["rule"], "severity": a["severity"], "shop": shop,
                  "agent_id": a["agent_id"] or "", "subject": a["subject"] or ""}
        ends = a["resolved_at"] or (datetime.fromisoformat(a["last_sent_at"]) + ALERTMANAGER_VALID).isoformat()
        alert = {"labels": {k: v for k, v in labels.items() if v},
                 "annotations": {"message": a["message"], "summary": a["message"]},
                 "startsAt": a["fired_at"], "endsAt": ends}
        if board_url:
            alert["generatorURL"] = board_url
        out.append(alert)
    return json.dumps(out, ensure_ascii=False).encode()


class WebhookSender:
    """One receiver: a queue and a thread that empties it, in order, retrying until it gets through."""

    def __init__(self, url: str, kind: str = "json", shop: str = "default", board_url: str = "",
                 batch: int = 100, timeout_s: float = 5.0) -> None:
        if kind not in ("json", "alertmanager"):
            raise ValueError(f"webhook kind: 'json' or 'alertmanager', not '{kind}'")
        self.url, self.kind, self.shop, self.board_url = url, kind, shop, board_url
        self.batch, self.timeout_s = batch, timeout_s
        self.sent = self.failures = self.refused = 0
        self._queue: deque[Delivery] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"webhook {url}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def put(self, deliveries: list[Delivery]) -> None:
        if deliveries:
            with self._wake:
                self._queue.extend(deliveries)
                self._wake.notify()

    def close(self, wait_s: float = 5.0) -> None:
        """Stop after trying to deliver what is queued for up to `wait_s`."""
        deadline = time.monotonic() + wait_s
        while self._queue and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=1)

    def _run(self) -> None:
        backoff = BACKOFF_START_S
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                batch = [self._queue[i] for i in range(min(self.batch, len(self._queue)))]
            try:
                self._post(batch)
            except urllib.error.HTTPError as e:
                if 400 <= e.code < 500 and e.code not in (408, 429):
                    # the receiver refuses this payload and always will: say so, do not block the rest
                    log.error("webhook %s refused %d alerts: HTTP %d %s", self.url, len(batch), e.code,
                              e.read()[:500].decode("utf-8", "replace"))
                    self.refused += len(batch)
                    self._done(batch)
                    continue
                self._retry(e, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            except OSError as e:      # down, refused, timed out: keep it, try again
                self._retry(e, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_START_S
            self.sent += len(batch)
            self._done(batch)

    def _retry(self, error, backoff: float) -> None:
        self.failures += 1
        log.warning("webhook %s: %s; retrying in %.1f s (%d queued)", self.url, error, backoff, len(self._queue))
        with self._wake:
            self._wake.wait(timeout=backoff)

    def _done(self, batch: list[Delivery]) -> None:
        with self._wake:
            for _ in batch:
                self._queue.popleft()

    def _post(self, batch: list[Delivery]) -> None:
        body = alertmanager(batch, self.shop, self.board_url) if self.kind == "alertmanager" \
            else plain_json(batch, self.shop)
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()
