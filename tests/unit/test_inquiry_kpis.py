from eventkit import agent, cust, ev, kpis, run

DAY = "2026-11-03"


def created(ts, o, c="c1", amount=100.0, **kw):
    return ev("order_created", ts, order_id=o, customer_id=c, amount=amount, **kw)


def paid(ts, o, c="c1", amount=100.0):
    return ev("order_paid", ts, order_id=o, customer_id=c, amount=amount)


def refunded(ts, o, c="c1", amount=100.0):
    return ev("order_refunded", ts, order_id=o, customer_id=c, amount=amount)


def test_inquiry_paid_by_end_of_next_day_is_converted():
    p = run(
        cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:30"),
        created("2026-11-04T09:00:00", "o1"), paid("2026-11-04T23:59:59", "o1"),   # created within the 24 h credit
        until="2026-11-05T00:00:00",
    )
    k = kpis(p, "a1", DAY)
    assert (k["inquiries"], k["converted_inquiries"], k["lost_inquiries"]) == (1, 1, 0)
    assert k["inquiry_conversion_rate"] == 1 / 1
    assert k["churn_rate"] == 0 / 1


def test_payment_after_the_window_neither_converts_nor_loses():
    p = run(
        cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:30"),
        created("2026-11-04T09:00:00", "o1"), paid("2026-11-05T00:00:00", "o1"),   # paid at the window end
        until="2026-11-06T00:00:00",
    )
    k = kpis(p, "a1", DAY)
    assert (k["inquiries"], k["converted_inquiries"], k["lost_inquiries"]) == (1, 0, 0)


def test_no_order_by_end_of_next_day_is_lost():
    p = run(
        cust("2026-11-03T10:00:00", c="c1"), agent("2026-11-03T10:00:30", c="c1"),   # lost
        cust("2026-11-03T10:00:00", c="c2"), agent("2026-11-03T10:00:30", c="c2"),
        created("2026-11-03T10:30:00", "o2", c="c2"), paid("2026-11-03T10:31:00", "o2", c="c2"),  # converted
        cust("2026-11-03T10:00:00", c="c3"), agent("2026-11-03T10:00:30", c="c3"),
        created("2026-11-05T00:00:00", "o3", c="c3"),            # created at the window end: too late -> lost
        cust("2026-11-03T10:00:00", c="c4"), agent("2026-11-03T10:00:30", c="c4"),
        created("2026-11-03T11:00:00", "o4", c="c4"),            # created, never paid: neither
        until="2026-11-05T00:00:00",
    )
    k = kpis(p, "a1", DAY)
    assert (k["inquiries"], k["converted_inquiries"], k["lost_inquiries"]) == (4, 1, 2)
    assert k["inquiry_conversion_rate"] == 1 / 4
    assert k["churn_rate"] == 2 / 4


def test_inquiry_outcome_is_open_until_the_following_day_ends():
    p = run(cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:30"), until="2026-11-04T23:59:59")
    assert kpis(p, "a1", DAY)["lost_inquiries"] == 0
    p = run(cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:30"), until="2026-11-05T00:00:00")
    assert kpis(p, "a1", DAY)["lost_inquiries"] == 1


def test_order_credited_to_another_agent_does_not_convert_and_the_inquiry_is_lost():
    p = run(
        cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:30", a="a1"),
        created("2026-11-03T12:00:00", "o1", agent_id="a2"), paid("2026-11-03T12:01:00", "o1"),
        until="2026-11-05T00:00:00",
    )
    assert kpis(p, "a1", DAY)["converted_inquiries"] == 0
    assert kpis(p, "a1", DAY)["lost_inquiries"] == 1
    assert kpis(p, "a2", DAY)["orders"] == 1


def test_after_sales_reception_is_not_an_inquiry():
    p = run(
        created("2026-11-01T10:00:00", "o1", agent_id="a9"), paid("2026-11-01T10:05:00", "o1"),
        cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:30"),   # paid 2 days ago: after-sales
        until="2026-11-05T00:00:00",
    )
    k = kpis(p, "a1", DAY)
    assert k["served_customers"] == 1
    assert (k["inquiries"], k["lost_inquiries"]) == (0, 0)
    assert k["inquiry_conversion_rate"] is None     # 0 / 0
    assert k["churn_rate"] is None


def test_after_sales_reception_becomes_an_inquiry_when_it_sells():
    p = run(
        created("2026-11-01T10:00:00", "o1", agent_id="a9"), paid("2026-11-01T10:05:00", "o1"),
        cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:30"),
        created("2026-11-03T11:00:00", "o2"), paid("2026-11-03T11:10:00", "o2"),   # credited to a1
        until="2026-11-05T00:00:00",
    )
    k = kpis(p, "a1", DAY)
    assert (k["inquiries"], k["converted_inquiries"], k["lost_inquiries"]) == (1, 1, 0)


def test_paid_order_older_than_after_sales_days_or_fully_refunded_leaves_an_inquiry():
    p = run(
        created("2026-10-01T10:00:00", "o1", c="c1", agent_id="a9"), paid("2026-10-01T10:05:00", "o1", c="c1"),
        created("2026-11-01T10:00:00", "o2", c="c2", agent_id="a9"), paid("2026-11-01T10:05:00", "o2", c="c2"),
        refunded("2026-11-02T10:00:00", "o2", c="c2", amount=100.0),   # fully refunded
        cust("2026-11-03T10:00:00", c="c1"), agent("2026-11-03T10:00:30", c="c1"),   # 33 days > 21
        cust("2026-11-03T10:00:00", c="c2"), agent("2026-11-03T10:00:30", c="c2"),
        until="2026-11-05T00:00:00",
    )
    assert kpis(p, "a1", DAY)["inquiries"] == 2
    assert kpis(p, "a1", DAY)["lost_inquiries"] == 2


def test_each_agent_customer_day_is_one_inquiry():
    p = run(
        cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:30"), agent("2026-11-03T18:00:00"),
        agent("2026-11-04T09:00:00"),
        until="2026-11-06T00:00:00",
    )
    assert kpis(p, "a1", DAY)["inquiries"] == 1
    assert kpis(p, "a1", "2026-11")["inquiries"] == 2
    assert kpis(p, "a1", "2026-11")["lost_inquiries"] == 2
