"""The worker closes the previous month on its schedule (here: due since the 1st at
00:00), once it has read its inputs to the end, and publishes the consequences to
cs.consequences; the close equals `close-month` on a replay of the same events.
Events for the closed month that come after it are recorded as post-close adjustments.
The worker's store here is PostgreSQL."""

import json
import subprocess
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from sqlmodel import Session

from cspulse import embedded
from cspulse.core import Params
from cspulse.core.shopclock import to_us
from cspulse.monthend import service
from rules.month_end import load_month_end, load_scorecard
from store import repo
from streams.closing import due_period
from test_produce import read_topic
from test_webhooks import wait_for
from test_worker import CSPULSE, workers  # noqa: F401  (fixture)

ZONE = ZoneInfo("Asia/Shanghai")


def closed(url, period):
    try:
        with Session(repo.connect(url, must_exist=True)) as s:
            row = repo.current_close(period, session=s)
            return row and (json.loads(row.result), row.published)
    except Exception:       # the worker is still creating the database
        return None


def test_the_worker_closes_the_last_month_on_schedule_and_publishes_the_consequences(workers, tmp_path,  # noqa: F811
                                                                                     postgres):
    # on PostgreSQL, as deployed (docker-compose.yml)
    workers.db = workers.env["CSPULSE_DATABASE_URL"] = postgres.create_database("worker_month_end")
    period = due_period(datetime.now(ZONE), ZONE, 1, "00:00")     # last month, whatever today is
    path = tmp_path / "events.jsonl"
    subprocess.run([CSPULSE, "simulate", "--agents", "4", "--days", "3", "--traffic", "15", "--seed", "9",
                    "--start", f"{period}-01", "-o", str(path)], check=True, capture_output=True)
    # a paid order of the closed month stays in memory for a refund until now (up to 61 days after it)
    workers.env.update(CSPULSE_CLOSE_DAY="1", CSPULSE_CLOSE_TIME="00:00", CSPULSE_AFTER_SALES_DAYS="62")
    workers.produce(path)
    workers.start()
    assert wait_for(lambda: (c := closed(workers.db, period)) and c[1], 120), "no published close"
    result, _ = closed(workers.db, period)

    # the same events replayed as of now, closed by hand
    url = f"sqlite:///{tmp_path / 'replay.db'}"
    engine = repo.connect(url)
    embedded.replay(embedded.open_sources([str(path)]), engine=engine, params=Params(after_sales_days=62),
                    until=to_us(datetime.now(timezone.utc)))
    by_hand = service.close_month(engine, period, zone=ZONE, card=load_scorecard(), rules=load_month_end(),
                                  now=datetime.now(ZONE), issued_at=datetime.fromisoformat(result["issued_at"]))
    assert result["ranked"] == 4 == by_hand.result["ranked"]
    assert result["agents"] == by_hand.result["agents"]

    sent = [json.loads(r.value) for r in read_topic(workers.kafka, workers.prefix + "cs.consequences")]
    assert sorted(c["id"] for c in sent) == sorted(c["id"] for c in result["consequences"])
    assert {c["kind"] for c in sent} >= {"bonus", "deduction", "improvement_plan"}
    assert all(c["revision"] == 1 and c["state"] == "active" and c["period"] == period for c in sent)
    assert {r.key.decode() for r in read_topic(workers.kafka, workers.prefix + "cs.consequences")} == \
        {c["agent_id"] for c in sent}

    # After the close, a late chat message of the closed month and a refund, now, of one of its
    # paid orders: both are post-close adjustments of that month (SPEC §5), the refund by its
    # order's month; the events still held at the close (it read them ahead) are not.
    time.sleep(3)       # the pipelines learn of the close at the next store write (every 1 s here)
    paid = next(e for e in map(json.loads, path.read_text().splitlines()) if e.get("type") == "order_paid")
    now = datetime.now(ZONE).replace(microsecond=0)
    late = tmp_path / "late.jsonl"
    late.write_text("\n".join(json.dumps(e) for e in (
        {"type": "order_refunded", "event_id": "late-refund", "ts": now.isoformat(),
         "order_id": paid["order_id"], "customer_id": paid["customer_id"], "amount": paid["amount"]},
        {"type": "message", "event_id": "late-message", "ts": f"{period}-02T12:00:00+08:00",
         "conversation_id": "late-conv", "customer_id": "late-customer", "sender": "customer"})) + "\n")
    workers.produce(late)

    def adjustments():
        with Session(repo.connect(workers.db, must_exist=True)) as s:
            return {(a.event_id, a.type) for a in repo.read_adjustments(period, session=s)}
    assert wait_for(lambda: len(adjustments()) >= 2, 60), f"adjustments: {adjustments()}"
    time.sleep(2)       # (a few store writes more: nothing else comes)
    assert adjustments() == {("late-refund", "order_refunded"), ("late-message", "message")}
