from eventkit import agent, bot, cust, kpis, run

DAY = "2026-11-03"


def test_response_time_is_reply_minus_wait_start_averaged_per_agent():
    p = run(
        cust("2026-11-03T10:00:00", c="c1"), agent("2026-11-03T10:00:30", c="c1"),   # 30 s
        cust("2026-11-03T11:00:00", c="c2"), agent("2026-11-03T11:01:00", c="c2"),   # 60 s
        cust("2026-11-03T12:00:00", c="c3"), agent("2026-11-03T12:02:15", c="c3"),   # 135 s
    )
    k = kpis(p, "a1", DAY)
    assert k["responses"] == 3
    assert k["avg_response_time_s"] == round((30 + 60 + 135) / 3, 3)  # 75.0
    assert k["slow_responses"] == 1                                    # only 135 > 100
    assert k["response_within_3min_rate"] == 3 / 3                     # all <= 180


def test_further_customer_messages_bot_and_auto_reply_leave_the_wait_open():
    p = run(
        cust("2026-11-03T10:00:00"),
        bot("2026-11-03T10:00:05"),
        agent("2026-11-03T10:00:10", auto=True),
        cust("2026-11-03T10:00:40"),
        agent("2026-11-03T10:02:00"),       # closes the wait opened at 10:00:00: 120 s
        agent("2026-11-03T10:02:30"),       # no open wait: not a response
    )
    k = kpis(p, "a1", DAY)
    assert k["responses"] == 1
    assert k["avg_response_time_s"] == 120.0
    assert k["slow_responses"] == 1         # 120 > 100
    assert k["response_within_3min_rate"] == 1.0


def test_wait_opened_before_opening_hours_starts_at_opening():
    # opened 07:30, service opens 08:00, reply 08:00:50 -> 50 s
    p = run(cust("2026-11-03T07:30:00"), agent("2026-11-03T08:00:50"))
    assert kpis(p, "a1", DAY)["avg_response_time_s"] == 50.0


def test_reply_before_opening_counts_as_zero_seconds():
    p = run(cust("2026-11-03T02:00:00"), agent("2026-11-03T02:10:00"))
    k = kpis(p, "a1", DAY)
    assert k["responses"] == 1
    assert k["avg_response_time_s"] == 0.0
    assert k["unanswered"] == 0


def test_wait_spanning_midnight_is_credited_on_the_day_of_the_reply():
    # 23:59:00 is inside 08:00-24:00; the reply at 00:01:00 the next day: 120 s, on 11-04
    p = run(cust("2026-11-03T23:59:00"), agent("2026-11-04T00:01:00"))
    assert kpis(p, "a1", "2026-11-03")["responses"] == 0
    assert kpis(p, "a1", "2026-11-04")["responses"] == 1
    assert kpis(p, "a1", "2026-11-04")["avg_response_time_s"] == 120.0
    assert kpis(p, "a1", "2026-11")["avg_response_time_s"] == 120.0


def test_message_after_closing_waits_for_next_opening():
    # service hours 08:00-22:00: a message at 23:00 waits from 08:00 the next day; reply 08:01 -> 60 s
    from cspulse.core import Params
    p = run(cust("2026-11-03T23:00:00"), agent("2026-11-04T08:01:00"), params=Params(service_hours="08:00-22:00"))
    assert kpis(p, "a1", "2026-11-04")["avg_response_time_s"] == 60.0


def test_first_response_time_is_the_first_of_each_conversation_and_day():
    p = run(
        cust("2026-11-03T10:00:00", conv="v1"), agent("2026-11-03T10:00:20", conv="v1"),  # first of v1: 20 s
        cust("2026-11-03T10:05:00", conv="v1"), agent("2026-11-03T10:06:00", conv="v1"),  # not first: 60 s
        cust("2026-11-03T11:00:00", conv="v2"), agent("2026-11-03T11:00:40", conv="v2"),  # first of v2: 40 s
        cust("2026-11-04T09:00:00", conv="v1"), agent("2026-11-04T09:01:40", conv="v1"),  # first of v1 on 11-04: 100 s
    )
    assert kpis(p, "a1", DAY)["first_response_time_s"] == (20 + 40) / 2            # 30.0
    assert kpis(p, "a1", DAY)["avg_response_time_s"] == round((20 + 60 + 40) / 3, 3)  # 40.0
    assert kpis(p, "a1", "2026-11")["first_response_time_s"] == round((20 + 40 + 100) / 3, 3)  # 53.333


def test_response_time_degrades_with_three_minute_boundary_inclusive():
    p = run(
        cust("2026-11-03T10:00:00", c="c1"), agent("2026-11-03T10:03:00", c="c1"),  # 180 s: within
        cust("2026-11-03T10:00:00", c="c2"), agent("2026-11-03T10:03:01", c="c2"),  # 181 s: not within
    )
    assert kpis(p, "a1", DAY)["response_within_3min_rate"] == 1 / 2


def test_wait_unanswered_for_an_hour_counts_once_and_moves_to_who_answers():
    p = run(
        cust("2026-11-03T09:00:00"), agent("2026-11-03T09:00:30", a="a1"),   # a1 last replied
        cust("2026-11-03T10:00:00"),                                           # opens a wait
        agent("2026-11-03T11:30:00", a="a2"),                                  # answered after 5400 s by a2
    )
    assert kpis(p, "a1", DAY)["unanswered"] == 0
    assert kpis(p, "a2", DAY)["unanswered"] == 1
    assert kpis(p, "a2", DAY)["responses"] == 1         # a late answer is still a response
    assert kpis(p, None, DAY)["unanswered"] == 1


def test_never_answered_wait_goes_to_last_human_replier_as_of_evaluation_time():
    p = run(cust("2026-11-03T09:00:00"), agent("2026-11-03T09:00:10", a="a1"), cust("2026-11-03T10:00:00"),
            until="2026-11-03T11:00:01")   # 3601 s after the wait started
    assert kpis(p, "a1", DAY)["unanswered"] == 1
    p = run(cust("2026-11-03T09:00:00"), agent("2026-11-03T09:00:10", a="a1"), cust("2026-11-03T10:00:00"),
            until="2026-11-03T11:00:00")   # exactly 3600 s: not yet
    assert kpis(p, "a1", DAY)["unanswered"] == 0


def test_answer_exactly_at_the_limit_is_not_unanswered():
    p = run(cust("2026-11-03T10:00:00"), agent("2026-11-03T11:00:00"))
    assert kpis(p, "a1", DAY)["unanswered"] == 0
    assert kpis(p, "a1", DAY)["avg_response_time_s"] == 3600.0


def test_unanswered_wait_with_no_human_reply_counts_for_the_shop_only():
    p = run(cust("2026-11-03T10:00:00"), until="2026-11-03T12:00:00")
    assert kpis(p, None, DAY)["unanswered"] == 1
    assert p.book.agents(DAY) == []


def test_unanswered_counts_on_the_day_of_the_effective_start():
    # opened 03:00 -> effective start 08:00 on 11-03, answered 09:30 on 11-03 (5400 s)
    p = run(cust("2026-11-03T03:00:00"), agent("2026-11-03T09:30:00"))
    assert kpis(p, "a1", DAY)["unanswered"] == 1


def test_served_customers_are_customer_days_with_a_human_reply():
    p = run(
        cust("2026-11-03T10:00:00", c="c1"), agent("2026-11-03T10:00:10", c="c1"),
        agent("2026-11-03T15:00:00", c="c1"),                           # same customer, same day
        agent("2026-11-03T10:00:10", c="c2", auto=True),                # auto reply: not served
        agent("2026-11-04T10:00:00", c="c1"),                           # a new day
        agent("2026-11-03T16:00:00", a="a2", c="c1"),                   # another agent, same customer-day
    )
    assert kpis(p, "a1", DAY)["served_customers"] == 1
    assert kpis(p, "a1", "2026-11")["served_customers"] == 2     # (c1, 11-03) and (c1, 11-04)
    assert kpis(p, "a2", DAY)["served_customers"] == 1
    assert kpis(p, None, DAY)["served_customers"] == 1           # the shop served c1 once that day
    assert kpis(p, None, "2026-11")["served_customers"] == 2


def test_no_responses_gives_null_times_and_rates():
    p = run(agent("2026-11-03T10:00:00"))
    k = kpis(p, "a1", DAY)
    assert k["responses"] == 0
    assert k["avg_response_time_s"] is None
    assert k["first_response_time_s"] is None
    assert k["response_within_3min_rate"] is None


def test_utc_time_late_in_the_evening_is_the_next_shanghai_day_and_month():
    # 2026-11-30T16:30Z is 2026-12-01 00:30 in Shanghai
    p = run(cust("2026-11-30T16:29:00Z"), agent("2026-11-30T16:30:00Z"))
    assert kpis(p, "a1", "2026-12-01")["responses"] == 1
    assert kpis(p, "a1", "2026-12")["responses"] == 1
    assert kpis(p, "a1", "2026-11")["responses"] == 0
