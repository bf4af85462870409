"""Whether a partition reads events of now or a backlog (`streams.worker._reads_now`):
told by its slowest customer input still being read, not by its newest event, so a
backlog whose orders were read ahead of its chat is not looked ahead at each batch."""

from cspulse.core import Params, Pipeline
from eventkit import at, cust, ev
from streams import worker

CHAT, ORDERS = worker.PREFIX + "cs.chat", worker.PREFIX + "cs.orders"
NOW = at("2026-11-20T12:00:00")


def fed(chat_ts: str, order_ts: str) -> Pipeline:
    pl = Pipeline(Params())
    pl.expected_inputs = worker.ORDERED_INPUTS
    pl.feed_line(cust(chat_ts, c="c1"), CHAT)
    pl.feed_line(ev("order_created", order_ts, order_id="o1", customer_id="c2", amount=10), ORDERS)
    return pl


def test_orders_read_up_to_now_while_chat_is_days_behind_is_a_backlog():
    pl = fed("2026-11-03T10:00:00", "2026-11-20T11:59:00")
    assert pl.max_ts == at("2026-11-20T11:59:00")      # the newest event alone says "now"
    assert not worker._reads_now(pl, set(), NOW)
    # chat idle (read to its end, nothing for 2 s): its last event no longer holds the partition back
    assert worker._reads_now(pl, {CHAT}, NOW)


def test_every_input_within_the_allowed_lateness_reads_now():
    # 599 s and 60 s old: both within the 600 s of allowed lateness
    assert worker._reads_now(fed("2026-11-20T11:50:01", "2026-11-20T11:59:00"), set(), NOW)
    # 601 s old: behind
    assert not worker._reads_now(fed("2026-11-20T11:49:59", "2026-11-20T11:59:00"), set(), NOW)


def test_a_partition_that_read_nothing_yet_is_not_looked_ahead():
    assert not worker._reads_now(Pipeline(Params()), set(), NOW)
