"""SPEC §5: events for a month already closed never change the close; they are recorded
as post-close adjustments.  An order's later events count for the month the order was
created in (§3.2), so they are recorded by that month, not by their own time.  What
arrived before the close is in it (its KPIs include the events still held), so an event
is judged as it arrives, not when it is applied."""

from eventkit import agent, at, cust, ev, kpis

from cspulse.core import Pipeline


def order(kind, ts, o, c, **kw):
    return ev(f"order_{kind}", ts, order_id=o, customer_id=c, event_id=f"{o}-{kind}", **kw)


def rows(p):
    return [(r["event_id"], r["period"], r["type"], r["agent_id"], r["customer_id"]) for r in p.post_close]


def october(p):
    """a1's October, before the close: o1 100.00 created and paid, o2 50.00 created."""
    for line in (order("created", "2026-10-20T10:00:00", "o1", "c1", amount=100, agent_id="a1"),
                 order("paid", "2026-10-21T10:00:00", "o1", "c1", amount=100),
                 order("created", "2026-10-30T10:00:00", "o2", "c2", amount=50, agent_id="a1")):
        p.feed_line(line)


def test_a_later_event_of_a_closed_months_order_is_recorded_for_that_month():
    p = Pipeline()
    october(p)
    p.closed_months = frozenset({"2026-10"})      # the close at 00:30 on 11-02
    for line in (order("paid", "2026-11-02T10:00:00", "o2", "c2", amount=50),          # October's o2
                 order("created", "2026-11-02T11:00:00", "o3", "c3", amount=20, agent_id="a1"),
                 order("paid", "2026-11-02T11:05:00", "o3", "c3", amount=20),          # November's o3
                 order("paid", "2026-11-02T11:06:00", "o4", "c4", amount=9),           # o4 never created
                 cust("2026-11-05T10:00:00", c="c1"), agent("2026-11-05T10:01:00", c="c1"),
                 order("refunded", "2026-11-10T10:00:00", "o1", "c1", amount=100)):   # October's o1
        p.feed_line(line)
    # recorded as they arrive (o2's creation was still held when its payment came: nothing came
    # after it; the refund is still held: within the allowed 600 s of the newest event)
    refund = ("o1-refunded", "2026-10", "order_refunded", "a1", "c1")
    assert rows(p) == [("o2-paid", "2026-10", "order_paid", "a1", "c2"), refund]
    p.finish()
    assert len(p.post_close) == 2                 # applying them records nothing more
    # The live October figures moved by exactly those two events: paid 1 -> 2 (o2), refunded
    # 0 -> 1 (o1), valid 1 -> 1 (o2 became valid, o1, refunded in full: 100 < 100 is false, no longer).
    october_kpis = kpis(p, "a1", "2026-10")
    assert (october_kpis["orders"], october_kpis["paid_orders"], october_kpis["refunded_orders"],
            october_kpis["valid_orders"]) == (2, 2, 1, 1)
    assert kpis(p, "a1", "2026-11")["paid_orders"] == 1      # o3, November's own: no adjustment


def test_an_event_that_arrived_before_the_close_is_in_it_not_an_adjustment():
    # o2's payment at 23:58 on 10-31 arrives before the close and is still held when it is made
    # (the close's KPIs are a view that includes held events); applied after it, it is no adjustment
    p = Pipeline()
    october(p)
    p.feed_line(order("paid", "2026-10-31T23:58:00", "o2", "c2", amount=50))
    assert p.oldest_held() == at("2026-10-31T23:58:00")
    assert p.view().kpis("a1", "2026-10")["paid_orders"] == 2      # what the close reads
    p.closed_months = frozenset({"2026-10"})
    p.feed_line(cust("2026-11-02T09:00:00", c="c9"))                  # applies the payment
    p.finish()
    assert p.oldest_held() is None and rows(p) == []


def test_an_order_event_arriving_after_both_months_closed_is_recorded_once_for_the_orders_month():
    p = Pipeline()
    october(p)
    p.closed_months = frozenset({"2026-10", "2026-11"})
    p.feed_line(order("refunded", "2026-11-10T10:00:00", "o1", "c1", amount=30))   # by its own time: November
    p.feed_line(cust("2026-11-20T09:00:00", c="c9", event_id="m1"))                   # a November message
    p.finish(at("2026-11-21T00:00:00"))
    assert rows(p) == [("o1-refunded", "2026-10", "order_refunded", "a1", "c1"),
                       ("m1", "2026-11", "message", None, "c9")]


def test_an_order_stays_until_its_month_is_closed_on_a_later_close_day():
    from cspulse.settings import Settings
    assert Settings(close_day=2).params().order_grace_days == 2      # the default: closed 00:30 on the 2nd
    assert Settings(close_day=1).params().order_grace_days == 2      # (never less)
    assert Settings(close_day=5).params().order_grace_days == 5
    lines = [order("created", "2026-10-30T10:00:00", "o1", "c1", amount=40, agent_id="a1"),
             order("paid", "2026-11-04T10:00:00", "o1", "c1", amount=40)]
    # closed on the 2nd: October's o1 is forgotten at 11-03 00:00, so its payment on 11-04 counts
    # for nobody; closed on the 5th: kept until 11-06 00:00, so it counts for October
    paid = {}
    for close_day in (2, 5):
        p = Pipeline(Settings(close_day=close_day).params())
        p.run(lines)
        paid[close_day] = kpis(p, "a1", "2026-10")["paid_orders"]
    assert paid == {2: 0, 5: 1}
