"""StallWatch: a held input partition with messages waiting that has not moved for
`after_s` is stalled; one that moves, or has nothing waiting, is not."""

from streams.stalls import StallWatch

CHAT, ORDERS = (0, "cs.chat"), (0, "cs.orders")


def test_a_partition_with_messages_waiting_that_does_not_move_is_stalled_after_the_delay():
    watch = StallWatch(after_s=60)
    ends = {CHAT: 100, ORDERS: 40}           # next offsets to be written: chat 0..99, orders 0..39
    assert watch.check({CHAT: 10, ORDERS: -1}, ends, now=0) == []
    assert watch.check({CHAT: 50, ORDERS: -1}, ends, now=59.9) == []
    # 60 s after it was first seen at -1 with 40 messages waiting, orders has not moved
    assert watch.check({CHAT: 99, ORDERS: -1}, ends, now=60) == [ORDERS]
    # chat is read to its end (applied 99 = end 100 - 1): idle, not stalled, however long
    assert watch.check({CHAT: 99, ORDERS: -1}, ends, now=500) == [ORDERS]


def test_moving_resets_the_clock_and_a_partition_no_longer_held_is_forgotten():
    watch = StallWatch(after_s=60)
    ends = {CHAT: 100}
    watch.check({CHAT: 10}, ends, now=0)
    watch.check({CHAT: 11}, ends, now=50)    # moved at 50: the clock starts again
    assert watch.check({CHAT: 11}, ends, now=109) == []
    assert watch.check({CHAT: 11}, ends, now=110) == [CHAT]
    assert watch.check({}, ends, now=111) == []          # revoked
    assert watch.check({CHAT: 11}, ends, now=112) == []  # held again: a fresh clock
    watch.forget()
    assert watch.check({CHAT: 11}, ends, now=171) == []
    assert watch.check({CHAT: 11}, ends, now=231) == [CHAT]
