from eventkit import agent, cust, ev, kpis, run

DAY = "2026-11-03"


def order(kind, ts, o, c="c1", **kw):
    return ev(f"order_{kind}", ts, order_id=o, customer_id=c, **kw)


def test_order_is_credited_to_the_most_recent_human_reply_within_24_hours():
    p = run(
        cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:10", a="a1"),
        agent("2026-11-03T10:05:00", a="a2"),                                  # most recent
        agent("2026-11-03T10:06:00", a="a3", auto=True),                       # not human
        order("created", "2026-11-03T12:00:00", "o1", amount=88.5),
    )
    assert kpis(p, "a2", DAY)["orders"] == 1
    assert kpis(p, "a2", DAY)["order_amount"] == 88.5
    assert kpis(p, "a1", DAY)["orders"] == 0


def test_credit_look_back_expires_after_24_hours_and_the_order_is_silent():
    p = run(
        cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:10"),
        order("created", "2026-11-04T10:00:10", "o1", amount=50),      # exactly 24 h: credited
        order("created", "2026-11-04T10:00:11", "o2", amount=70),      # 24 h + 1 s: silent
    )
    assert kpis(p, "a1", "2026-11-04")["orders"] == 1
    assert kpis(p, None, "2026-11-04")["orders"] == 2               # the shop sees both
    assert kpis(p, None, "2026-11-04")["order_amount"] == 50 + 70
    assert p.book.agents("2026-11-04") == ["a1"]


def test_explicit_credit_wins_over_the_last_reply():
    p = run(cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:10", a="a1"),
            order("created", "2026-11-03T11:00:00", "o1", amount=10, agent_id="a7"))
    assert kpis(p, "a7", DAY)["orders"] == 1
    assert kpis(p, "a1", DAY)["orders"] == 0


def test_order_ratios_validity_and_average_order_value():
    p = run(
        order("created", "2026-11-03T10:00:00", "o1", c="c1", amount=100, agent_id="a1"),
        order("paid", "2026-11-03T10:01:00", "o1", c="c1", amount=100),                    # valid
        order("created", "2026-11-03T10:00:00", "o2", c="c1", amount=50, agent_id="a1"),
        order("paid", "2026-11-03T10:02:00", "o2", c="c1", amount=50),
        order("refunded", "2026-11-03T12:00:00", "o2", c="c1", amount=20),                  # partial: still valid
        order("created", "2026-11-03T10:00:00", "o3", c="c2", amount=30, agent_id="a1"),
        order("paid", "2026-11-03T10:03:00", "o3", c="c2", amount=30),
        order("refunded", "2026-11-03T12:00:00", "o3", c="c2", amount=30),                  # full: not valid
        order("created", "2026-11-03T10:00:00", "o4", c="c3", amount=40, agent_id="a1"),
        order("paid", "2026-11-03T10:04:00", "o4", c="c3", amount=40),
        order("cancelled", "2026-11-03T13:00:00", "o4", c="c3"),                            # cancelled: not valid
        order("created", "2026-11-03T10:00:00", "o5", c="c4", amount=60, agent_id="a1"),
        order("paid", "2026-11-03T10:05:00", "o5", c="c4", amount=60),
        order("flagged", "2026-11-03T14:00:00", "o5", c="c4", reason="fake address"),       # flagged: not valid
        order("created", "2026-11-03T10:00:00", "o6", c="c5", amount=20, agent_id="a1"),    # never paid
    )
    k = kpis(p, "a1", DAY)
    assert k["orders"] == 6
    assert k["order_amount"] == 100 + 50 + 30 + 40 + 60 + 20           # 300
    assert k["paid_orders"] == 5
    assert k["payment_ratio"] == 5 / 6
    assert k["paid_amount"] == 100 + 50 + 30 + 40 + 60                 # 280
    assert k["paying_customers"] == 4                                  # c1, c2, c3, c4
    assert k["avg_order_value"] == 280 / 4                             # 70.0
    assert k["refunded_orders"] == 2                                   # o2, o3
    assert k["refund_ratio"] == 2 / 5
    assert k["abnormal_orders"] == 1
    assert k["abnormal_order_ratio"] == 1 / 6
    assert k["valid_orders"] == 2                                      # o1, o2
    assert k["valid_order_ratio"] == 2 / 6


def test_later_order_events_count_for_the_period_the_order_was_created_in():
    p = run(
        order("created", "2026-10-31T23:00:00", "o1", amount=100, agent_id="a1"),
        order("paid", "2026-11-01T09:00:00", "o1", amount=100),
    )
    assert kpis(p, "a1", "2026-10")["paid_orders"] == 1
    assert kpis(p, "a1", "2026-10")["paid_amount"] == 100
    assert kpis(p, "a1", "2026-11")["paid_orders"] == 0


def test_paying_customers_are_distinct_over_the_month_not_summed_over_days():
    p = run(
        order("created", "2026-11-03T10:00:00", "o1", amount=10, agent_id="a1"),
        order("paid", "2026-11-03T10:01:00", "o1", amount=10),
        order("created", "2026-11-04T10:00:00", "o2", amount=30, agent_id="a1"),
        order("paid", "2026-11-04T10:01:00", "o2", amount=30),
    )
    assert kpis(p, "a1", "2026-11-03")["paying_customers"] == 1
    assert kpis(p, "a1", "2026-11-04")["paying_customers"] == 1
    assert kpis(p, "a1", "2026-11")["paying_customers"] == 1
    assert kpis(p, "a1", "2026-11")["avg_order_value"] == (10 + 30) / 1
    assert kpis(p, None, "2026-11")["paying_customers"] == 1


def test_money_sums_are_exact_to_the_fen():
    p = run(*[order("created", "2026-11-03T10:00:00", f"o{i}", amount=0.1, agent_id="a1") for i in range(3)])
    assert kpis(p, "a1", DAY)["order_amount"] == 0.3      # 10 + 10 + 10 fen, not 0.30000000000000004


def test_no_orders_gives_null_ratios():
    p = run(cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:10"))
    k = kpis(p, "a1", DAY)
    assert k["orders"] == 0 and k["order_amount"] == 0
    for name in ("payment_ratio", "refund_ratio", "abnormal_order_ratio", "valid_order_ratio", "avg_order_value"):
        assert k[name] is None, name


def test_payment_read_before_its_order_beyond_lateness_still_counts_once_created():
    p = run(
        order("paid", "2026-11-03T10:00:00", "o1", amount=25),
        order("created", "2026-11-03T09:00:00", "o1", amount=25, agent_id="a1"),   # 1 h late
    )
    k = kpis(p, "a1", DAY)
    assert (k["orders"], k["paid_orders"], k["paid_amount"], k["valid_orders"]) == (1, 1, 25, 1)
    assert p.stats.late == 1
