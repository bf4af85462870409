import pickle
from datetime import date, timedelta

from cspulse.core import Pipeline
from eventkit import agent, at, cust, ev


def test_state_follows_open_windows_not_the_number_of_events():
    p = Pipeline()
    sizes = {}
    first = date(2026, 11, 1)
    for d in range(90):
        day = (first + timedelta(days=d)).isoformat()
        for i in range(20):   # twenty new customers a day, each buying once, never seen again
            c = f"c{d}-{i}"
            p.feed_line(cust(f"{day}T10:00:00", c=c))
            p.feed_line(agent(f"{day}T10:00:30", c=c))
            p.feed_line(ev("order_created", f"{day}T10:05:00", order_id=f"o{d}-{i}", customer_id=c, amount=9))
            p.feed_line(ev("order_paid", f"{day}T10:06:00", order_id=f"o{d}-{i}", customer_id=c, amount=9))
        held = p.ledger.customers.values()
        sizes[d] = (len(held), sum(len(c.recent_ids) for c in held), sum(len(c.timers) for c in held))
    # 1,800 customers came; only those with an order in an open month or a payment
    # within the 21-day after-sales window stay: at most a month and a bit of them.
    customers_end, ids_end, timers_end = sizes[89]
    assert customers_end <= 20 * (31 + 2)
    # a saw-tooth that closes with each month: the 29th of each month holds the same
    assert sizes[89][0] <= sizes[59][0] <= sizes[29][0] + 20
    # event ids: the two-day horizon, up to two more days until the next prune,
    # and this test's one-day steps: five days at 80 events a day at most
    assert max(ids for _, ids, _ in sizes.values()) <= 80 * 5
    assert timers_end <= 20 * 3                     # inquiry windows of the last two days
    assert p.stats.applied == 90 * 80


def test_customers_changed_for_the_next_look_ahead_are_bounded_by_those_in_memory():
    # A backlog as the worker reads it: its changes drained after each batch (a day here),
    # no look-ahead in between (a backlog's views look at the book as applied).
    p = Pipeline()
    p.track_changes()
    first = date(2026, 6, 1)
    for d in range(120):
        day = (first + timedelta(days=d)).isoformat()
        for i in range(100):   # a hundred new customers a day, each buying once: 12,000 in all
            c = f"c{d}-{i}"
            p.feed_line(cust(f"{day}T10:00:00", c=c))
            p.feed_line(agent(f"{day}T10:00:30", c=c))
            p.feed_line(ev("order_created", f"{day}T10:05:00", order_id=f"o{d}-{i}", customer_id=c, amount=9))
            p.feed_line(ev("order_paid", f"{day}T10:06:00", order_id=f"o{d}-{i}", customer_id=c, amount=9))
        p.drain_changes()
        assert len(p._dirty) <= 2 * len(p.ledger.customers) + 1_000
    # a month and a bit of customers stay in memory (the test above): at most 100 × 33;
    # every one of the 12,000 was changed, and those forgotten no longer wait for a look
    assert len(p.ledger.customers) <= 100 * 33
    assert len(p._dirty) <= 2 * 100 * 33 + 1_000 < 12_000


def test_a_look_ahead_copy_shares_only_what_it_cannot_change():
    from cspulse.core.ledger import _copy_customer
    p = Pipeline()      # a customer writing every 5 s with no reply: 60 messages held (allowed lateness)
    for k in range(60):
        p.feed_line(cust(f"2026-11-02T10:{k // 12:02d}:{k % 12 * 5:02d}", c="w"))
    held = p.ledger.customers["w"]
    assert len(held.pending) == 60 and len(held.recent_ids) == 60
    twin = _copy_customer(held)
    assert twin == held                                       # the same state
    assert twin.pending is not held.pending and twin.conversations is not held.conversations
    assert twin.recent_ids is held.recent_ids                 # shared: a look-ahead neither reads nor writes it
    # running a copy ahead (the look-ahead: every held event applied, the waits' timers
    # fired) gives facts and leaves the customer exactly as it was
    before = pickle.dumps(held)
    facts = p.ledger.shadow(["w"]).release(at("2026-11-03T00:00:00"))
    # one wait, opened by the first message, unanswered past 3 min; no human replied, so the shop's
    assert facts == [(None, "2026-11-02", "unanswered", 1)]
    assert pickle.dumps(held) == before and len(held.pending) == 60
