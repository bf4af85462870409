"""Which inputs of a partition stop being read because they ran ahead of its slowest one
(`streams/inputs.py`, `inputs_ahead`).  Event times in seconds; lateness 600 s."""

from streams.inputs import inputs_ahead

H = 3_600
LATE = 600


def test_an_input_more_than_the_lateness_ahead_of_the_slowest_stops():
    # orders at 10:00, chat at 09:49: 660 s ahead > 600 -> orders stop; chat (the slowest) reads on
    tops = {"chat": 9 * H + 49 * 60, "orders": 10 * H}
    assert inputs_ahead(tops, {"chat", "orders"}, set(), LATE) == {"orders"}


def test_within_the_lateness_nothing_stops():
    # 10:00 - 09:50 = 600 s, not more than 600
    tops = {"chat": 9 * H + 50 * 60, "orders": 10 * H}
    assert inputs_ahead(tops, {"chat", "orders"}, set(), LATE) == set()


def test_a_stopped_input_reads_again_only_within_half_the_lateness():
    # stopped at 10:00; chat at 09:52 -> 480 s ahead: > 300, stays stopped; not stopped yet: 480 <= 600, reads
    tops = {"chat": 9 * H + 52 * 60, "orders": 10 * H}
    assert inputs_ahead(tops, {"chat", "orders"}, {"orders"}, LATE) == {"orders"}
    assert inputs_ahead(tops, {"chat", "orders"}, set(), LATE) == set()
    # chat at 09:55 -> 300 s ahead: not more than 300, reads again
    tops["chat"] = 9 * H + 55 * 60
    assert inputs_ahead(tops, {"chat", "orders"}, {"orders"}, LATE) == set()


def test_the_slowest_is_the_slowest_input_with_records_left():
    # chat is read to its end (not waiting) at 02:00: it holds nothing back; feedback, still to
    # read, is at 09:00 -> orders 10:00 is 3,600 s ahead of it and stops
    tops = {"chat": 2 * H, "orders": 10 * H, "feedback": 9 * H}
    assert inputs_ahead(tops, {"orders", "feedback"}, set(), LATE) == {"orders"}


def test_nothing_left_to_read_elsewhere_stops_nothing():
    tops = {"chat": 2 * H, "orders": 10 * H}
    assert inputs_ahead(tops, {"orders"}, {"orders"}, LATE) == set()     # the only one waiting is the slowest
    assert inputs_ahead(tops, set(), {"orders"}, LATE) == set()


def test_an_input_not_heard_from_with_records_left_holds_back_all_heard():
    # feedback has records but none applied yet: the stream time waits for it, so chat and
    # orders stop until it speaks (it is not stopped itself, so it does)
    tops = {"chat": 2 * H, "orders": 10 * H}
    assert inputs_ahead(tops, {"chat", "orders", "feedback"}, set(), LATE) == {"chat", "orders"}


def test_the_slowest_input_never_stops():
    tops = {"chat": 1 * H, "orders": 5 * H, "feedback": 9 * H}
    for paused in (set(), {"orders", "feedback"}, {"chat", "orders", "feedback"}):
        assert "chat" not in inputs_ahead(tops, {"chat", "orders", "feedback"}, paused, LATE)
