import json
import random

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from cspulse.core import Params, Pipeline
from eventkit import agent, at, chatty_stream, cust, ev, kpis, run

DAY = "2026-11-03"


def test_duplicate_event_id_is_ignored():
    reply = agent("2026-11-03T10:00:30")
    p = run(cust("2026-11-03T10:00:00"), reply, reply,
            ev("order_created", "2026-11-03T10:01:00", order_id="o1", customer_id="c1", amount=5, event_id="dup"),
            ev("order_created", "2026-11-03T10:02:00", order_id="o2", customer_id="c1", amount=9, event_id="dup"))
    assert p.stats.duplicates == 2
    assert kpis(p, "a1", DAY)["responses"] == 1
    assert kpis(p, "a1", DAY)["order_amount"] == 5


def test_order_read_before_the_reply_that_earned_it_is_still_credited():
    p = run(
        cust("2026-11-03T10:00:00", c="c1"),
        ev("order_created", "2026-11-03T10:05:00", order_id="o1", customer_id="c1", amount=20),  # read first
        agent("2026-11-03T10:04:00", a="a1", c="c1"),                                            # 60 s earlier
    )
    assert p.stats.late == 0
    assert kpis(p, "a1", DAY)["orders"] == 1


def test_event_beyond_the_allowed_lateness_is_counted_late_and_still_applied():
    p = run(agent("2026-11-03T10:20:00", c="c2"), cust("2026-11-03T10:00:00"), agent("2026-11-03T10:00:30"))
    assert p.stats.late == 2           # both 20 min behind the newest event (> 10 min)
    assert kpis(p, "a1", DAY)["responses"] == 1


def day_of_events(seed: int) -> list[str]:
    """A small busy day: chats, orders, refunds, complaints, with ties on the same second."""
    rnd = random.Random(seed)
    out = []
    for n in range(12):
        c, a = f"c{n % 5}", f"a{n % 3}"
        t = 9 * 3600 + rnd.randrange(0, 8) * 120   # many events share a second
        hms = lambda s: f"2026-11-03T{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"  # noqa: E731
        out.append(cust(hms(t), c=c))
        if rnd.random() < 0.3:
            out.append(ev("message", hms(t + 5), conversation_id=f"v-{c}", customer_id=c, sender="bot"))
        out.append(agent(hms(t + rnd.choice([0, 30, 120, 200])), a=a, c=c, auto=rnd.random() < 0.2))
        out.append(agent(hms(t + rnd.choice([40, 250])), a=a, c=c))
        if rnd.random() < 0.6:
            o = f"o{n}"
            out.append(ev("order_created", hms(t + 300), order_id=o, customer_id=c, amount=rnd.choice([10, 25.5])))
            if rnd.random() < 0.8:
                out.append(ev("order_paid", hms(t + 300 + rnd.choice([0, 60])), order_id=o, customer_id=c,
                              amount=10))
            if rnd.random() < 0.3:
                out.append(ev("order_refunded", hms(t + 500), order_id=o, customer_id=c, amount=10))
        if rnd.random() < 0.2:
            out.append(ev("complaint", hms(t + 400), customer_id=c))
    out.sort(key=lambda line: json.loads(line)["ts"])
    return out


def all_kpis(p: Pipeline) -> dict:
    return {key: p.book.kpis(*key) for key in sorted(p.book.counters, key=str)}


def shuffle_within(lines: list[str], lateness_s: int, rnd: random.Random) -> list[str]:
    """Delay each event by a random amount of at most the lateness: any resulting order is allowed."""
    from eventkit import at
    ts = [at(json.loads(line)["ts"]) for line in lines]
    keyed = [(t + rnd.uniform(0, lateness_s * 1e6), i) for i, t in enumerate(ts)]
    return [lines[i] for _, i in sorted(keyed)]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), shuffle_seed=st.integers(0, 10_000), dup_rate=st.floats(0, 0.5))
def test_shuffling_within_lateness_and_duplicating_leaves_every_kpi_unchanged(seed, shuffle_seed, dup_rate):
    lines = day_of_events(seed)
    end = "2026-11-05T00:00:00"
    expected = all_kpis(run(*lines, until=end))
    rnd = random.Random(shuffle_seed)
    noisy = shuffle_within(lines, 600, rnd)
    noisy = [x for line in noisy for x in ([line, line] if rnd.random() < dup_rate else [line])]
    p = run(*noisy, until=end, params=Params())
    assert p.stats.late == 0
    assert all_kpis(p) == expected
    gathered = Pipeline()
    gathered.gather = 120 * 10**6       # the worker's way: a customer's held events applied together
    for line in noisy:
        gathered.feed_line(line)
    gathered.finish(at(end))
    assert all_kpis(gathered) == expected


def test_view_shows_what_finish_would_without_changing_the_state():
    import pickle
    lines = day_of_events(7)
    p = Pipeline()
    for line in lines:
        p.feed_line(line)
    from eventkit import at
    until = at("2026-11-05T00:00:00")
    before = pickle.dumps(p)
    seen = p.view(until)
    assert pickle.dumps(p) == before
    p.finish(until)
    assert {k: seen.kpis(*k) for k in seen.counters} == all_kpis(p)


@pytest.mark.parametrize("gather_s", [0, 120])
def test_a_tracked_pipeline_looks_ahead_incrementally_and_sees_the_same(gather_s):
    """A worker views every second while events stream in: its memo of each customer's
    look-ahead must give exactly the fresh computation, as events and timers come due,
    also when it applies a customer's held events together (`gather`) and the fresh
    one each as soon as it is due."""

    def nonzero(book):
        return {k: {n: v for n, v in b.items() if v} for k, b in book.counters.items() if any(b.values())}

    lines = day_of_events(7)
    tracked, fresh = Pipeline(), Pipeline()
    tracked.gather = gather_s * 10**6
    tracked.track_changes()
    step = max(1, len(lines) // 40)
    now, views, reused = 0, 0, 0
    for i in range(0, len(lines), step):
        for line in lines[i:i + step]:
            tracked.feed_line(line)
            fresh.feed_line(line)
        if i % (3 * step) == 0:
            tracked.drain_changes()       # the worker writes back after each batch
            if i % (6 * step) == 0:       # and looks ahead at what changed, for alerts
                tracked.look_ahead_changed(max(now, tracked.max_ts))
        for ahead in (0, 3600 * 10**6):   # an hour later fires timers (unanswered waits)
            now = max(now, tracked.max_ts) + ahead
            memo = dict(tracked._ahead)
            assert nonzero(tracked.view(now)) == nonzero(fresh.view(now))
            reused += sum(tracked._ahead.get(c) is v for c, v in memo.items())
            views += 1
    assert views >= 80 and reused > 0
    for later in (now, at("2026-11-06T00:00:00")):
        assert nonzero(tracked.view(later)) == nonzero(fresh.view(later))


def _nonzero(book):
    return {k: {n: v for n, v in b.items() if v} for k, b in book.counters.items() if any(b.values())}


def _ahead_notes(p):
    _, ahead = p.drain_notes()
    return {cid: sorted(map(repr, ns)) for cid, ns in ahead.items()}


def _three_ways(params, gather_us=0):
    """The same stream's pipelines: look-aheads resumed and views looking only at what
    changed (the worker); look-aheads done again; views passing over every customer each
    time.  Changes tracked, notes collected."""
    resumed, redone, scanned = Pipeline(params), Pipeline(params), Pipeline(params)
    redone.resume_look_ahead = False
    scanned.incremental_view = False
    for p in (resumed, redone, scanned):
        p.gather = gather_us
        p.track_changes()
        p.collect_notes()
    return resumed, redone, scanned


# (lines per batch, seconds between lines): 60 lines 6 times apart span more than the
# allowed lateness (600 s), so the stream applies some of a batch before the next look
@pytest.mark.parametrize("batch, pace, gather_s", [(1, 1, 0), (7, 1, 0), (60, 6, 0), (7, 1, 30), (60, 6, 120)])
def test_a_look_ahead_resumed_with_what_came_since_equals_one_done_again_from_scratch(batch, pace, gather_s):
    """The worker resumes each customer's look-ahead with the events that came since,
    instead of running all its held events again: the views and the provisional notes
    (what the alert rules see) must be exactly those of a look-ahead done again, also
    when a batch brings events that the stream applies before the next look, and when
    the stream applies a customer's held events together (`gather`), so that customers
    stand at different points of the stream."""

    nonzero, notes = _nonzero, _ahead_notes

    for seed in (1, 2, 3):
        lines = chatty_stream(seed, pace)
        every = resumed, redone, scanned = _three_ways(Params(wait_checks_s=(180.0,)), gather_s * 10**6)
        resumes = []
        resumed._resume = lambda *a, _r=resumed: (resumes.append(a[1]), Pipeline._resume(_r, *a))[1]
        now = 0
        for i in range(0, len(lines), batch):
            for p in every:
                for line in lines[i:i + batch]:
                    p.feed_line(line)
                p.drain_changes()
            now = max(now, resumed.max_ts) + (3600 * 10**6 if i % (5 * batch) == 0 else 10**6)   # now and then, waits time out
            if i % (2 * batch) == 0:        # views at times no batch looked at, also between
                half = now - 500_000
                assert nonzero(resumed.view(half)) == nonzero(redone.view(half)) == nonzero(scanned.view(half))
                assert notes(resumed) == notes(redone) == notes(scanned)
            for p in every:
                p.look_ahead_changed(now)
            assert notes(resumed) == notes(redone) == notes(scanned)
            if i % (3 * batch) == 0:
                assert nonzero(resumed.view(now)) == nonzero(redone.view(now)) == nonzero(scanned.view(now))
                assert notes(resumed) == notes(redone) == notes(scanned)
        end = at("2026-11-04T00:00:00")
        assert nonzero(resumed.view(end)) == nonzero(redone.view(end)) == nonzero(scanned.view(end))
        assert resumed.stats.late > 0       # the out-of-order lines reached the start-over path too
        assert resumes                      # and look-aheads were resumed, not only done again


def test_an_event_arriving_before_what_a_kept_look_ahead_applied_has_it_done_again():
    """c1 writes at 10:00:10, the look-ahead runs, then c1's message of 10:00:05 arrives
    (out of order, within the lateness): the wait opened at 10:00:05, so its 180 s check
    is due at 10:03:05, not 10:03:10, as a look-ahead from scratch says."""
    from eventkit import at

    params = Params(wait_checks_s=(180.0,))
    views = []
    for resume in (True, False):
        p = Pipeline(params)
        p.resume_look_ahead = resume
        p.track_changes()
        p.collect_notes()
        p.feed_line(cust("2026-11-03T10:00:10"))
        p.drain_changes()
        p.look_ahead_changed(at("2026-11-03T10:00:11"))
        p.feed_line(cust("2026-11-03T10:00:05"))
        p.drain_changes()
        p.look_ahead_changed(at("2026-11-03T10:04:00"))
        _, ahead = p.drain_notes()
        views.append([(n["kind"], n["ts"]) for n in ahead["c1"]])
    assert views[0] == views[1] == [("wait", at("2026-11-03T10:03:05"))]


def test_a_view_that_looks_only_at_what_changed_still_sees_a_timer_come_due_with_nothing_held():
    """c1 writes once at 10:00 and is never answered; c2 keeps the stream going until
    10:12, so c1's message is applied for real (nothing of c1 held any more).  At 10:30
    nothing of c1 is due; at 11:00:01 its wait has gone unanswered for 3,600 s, with no
    event of c1 since: the view must count it, as a pass over every customer does."""
    from eventkit import at

    def unanswered(book):       # no agent has replied: the wait counts for nobody (the shop)
        return book.counters.get((None, "2026-11-03"), {}).get("unanswered", 0)

    books = []
    for incremental in (True, False):
        p = Pipeline()
        p.incremental_view = incremental
        p.track_changes()
        p.feed_line(cust("2026-11-03T10:00:00", c="c1"))
        for m in range(1, 13):
            p.feed_line(cust(f"2026-11-03T10:{m:02d}:00", c="c2"))
            if m == 5:              # a view while c1 still holds its message: the next look only at changes
                p.drain_changes()
                assert unanswered(p.view(at("2026-11-03T10:05:30"))) == 0
        p.drain_changes()
        assert not p.ledger.customers["c1"].pending      # applied: 10:00 is before 10:12 - 600 s
        assert unanswered(p.view(at("2026-11-03T10:30:00"))) == 0
        books.append(unanswered(p.view(at("2026-11-03T11:00:01"))))
    # c1's wait (10:00:00 + 3,600 s = 11:00:00) is due; c2's (10:01:00) not yet
    assert books == [1, 1]


def test_gathered_events_are_applied_together_and_each_customer_written_once_for_them():
    """With `gather` 30 s, c1's messages of 10:00:00 and 10:00:20 are applied in one go,
    once the stream's cut (newest - 600 s - 30 s) passes the first: c1 changes once for
    the two, where applying each as soon as it is due changes it twice."""
    changes = []
    for gather_s in (0, 30):
        p = Pipeline()
        p.gather = gather_s * 10**6
        p.track_changes()
        p.feed_line(cust("2026-11-03T10:00:00"))
        p.feed_line(cust("2026-11-03T10:00:20"))
        p.drain_changes()                                   # (taking them in changed c1)
        times = [f"2026-11-03T10:{m:02d}:{s:02d}" for m in (10, 11) for s in range(1, 60, 5)]
        n = 0
        for t in times:
            p.feed_line(cust(t, c="c2"))
            changed, *_ = p.drain_changes()
            n += "c1" in changed
        assert not p.ledger.customers["c1"].pending      # by 10:11:56, 10:00:20 is 636 s behind
        changes.append(n)
    assert changes == [2, 1]


def test_the_daily_sweep_judges_the_state_with_every_due_event_applied_gathered_or_not():
    """c1's conversation was last touched on 11-03 at 23:00:30; its message of 11-05
    23:59:50 keeps it, so the wait it opens stays credited to a1, who answered there.  At
    the sweep of 11-06 00:00:05 (newest 00:10:05 - 600 s) that message is due, but not
    yet gathered (30 s before a 120 s cut): it must be applied before the sweep, or the
    conversation, idle two days on what was applied, is forgotten and the unanswered
    wait counts for the shop alone."""
    lines = [cust("2026-11-03T23:00:00"), agent("2026-11-03T23:00:30"),
             cust("2026-11-04T12:00:00", c="c2"), cust("2026-11-05T12:00:00", c="c2"),
             cust("2026-11-05T23:59:50"), cust("2026-11-06T00:10:05", c="c2")]
    unanswered = []
    for gather_s in (0, 120):
        p = Pipeline()
        p.gather = gather_s * 10**6
        for line in lines:
            p.feed_line(line)
        # the wait of 23:59:50 has 10 s of service hours left that day, then from 08:00: due 08:59:50
        p.finish(at("2026-11-06T10:00:00"))
        unanswered.append(p.book.counters[("a1", "2026-11-05")]["unanswered"])
    assert unanswered == [1, 1]


def test_what_the_daily_sweep_forgets_does_not_depend_on_when_it_ran():
    """A worker's partition applies days of events between two sweeps when its stream
    time jumps (an input read behind the others catches up; here the feedback input is
    silent until 11-06, so nothing is applied, and nothing swept, before then).  Replay's
    stream time moves event by event and sweeps at each midnight.  Both must count alike
    (found by bench/worker.py --days 20: worker != replay):

    - c1's October order o1 (10-31 18:38, credited to a1, who replied at 18:30) is paid
      on 11-03 at 04:02.  October is closed by then (an order stays until
      `order_grace_days` = 2 days after its month: 11-03 00:00), so the payment does not
      count: a1's October paid_orders = 0, orders = 1.
    - c1 comes back on 11-05 and a1 replies: c1 paid 2 days ago (within the 21
      after-sales days), so it is an after-sales reception, no inquiry: inquiries = 0.
    - c4's conversation was last touched on 11-01 at 10:00; c4 writes in it again on
      11-04 at 12:00, more than two idle days after (11-04 00:00 - 11-01 10:00 = 2 d 14 h):
      it starts afresh, so the wait nobody answers (unanswered at 13:00) is the shop's
      alone, not a1's, who replied there three days before: a1 0, shop 1 on 11-04."""
    chat = [cust("2026-10-31T18:29:00"), agent("2026-10-31T18:30:00"),
            cust("2026-11-01T09:59:00", c="c4"), agent("2026-11-01T10:00:00", c="c4"),
            cust("2026-11-04T12:00:00", c="c4"),
            cust("2026-11-05T10:00:00"), agent("2026-11-05T10:01:00")]
    orders = [ev("order_created", "2026-10-31T18:38:00", order_id="o1", customer_id="c1", amount=808.08),
              ev("order_paid", "2026-11-03T04:02:00", order_id="o1", customer_id="c1", amount=808.08),
              ev("order_created", "2026-11-05T12:00:00", order_id="o3", customer_id="c3", amount=5)]
    feedback = [ev("rating", "2026-11-06T12:00:00", customer_id="c9", agent_id="a2", score=5)]
    until = at("2026-11-06T13:00:00")

    replay = Pipeline().run(sorted(chat + orders + feedback, key=lambda line: json.loads(line)["ts"]), until)
    worker = Pipeline()
    worker.expected_inputs = frozenset({"chat", "orders", "feedback"})
    for source, lines in (("chat", chat), ("orders", orders)):
        for line in lines:
            worker.feed_line(line, source)
    assert worker.ledger.next_sweep == 0 and worker.ledger.held        # nothing applied, nothing swept yet
    worker.feed_line(feedback[0], "feedback")
    # the stream time jumps from nothing to 11-05 09:51 (chat, the slowest, less 10 min): one sweep
    assert worker.ledger.next_sweep == at("2026-11-06T00:00:00")
    worker.finish(until)

    for p in (replay, worker):
        assert (kpis(p, "a1", "2026-10")["orders"], kpis(p, "a1", "2026-10")["paid_orders"]) == (1, 0)
        assert (kpis(p, "a1", "2026-11-05")["served_customers"], kpis(p, "a1", "2026-11-05")["inquiries"]) == (1, 0)
        assert (kpis(p, "a1", "2026-11-04")["unanswered"], kpis(p, None, "2026-11-04")["unanswered"]) == (0, 1)
    assert all_kpis(worker) == all_kpis(replay)


def _days_stream(seed: int) -> list[str]:
    """Four days of customers coming back now and then (conversations, waits, orders paid
    and refunded), so that each midnight's sweep forgets some customers' old state and
    not others', with customers still holding events at each sweep."""
    rnd = random.Random(seed)
    out = []
    for day in range(3, 7):
        t = 8 * 3600
        for i in range(150):
            t += rnd.choice([20, 40, 90, 300])
            stamp = f"2026-11-{day:02d}T{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}"
            c = f"c{rnd.randrange(12)}"
            r = rnd.random()
            if r < 0.3:
                out.append(agent(stamp, a=f"a{rnd.randrange(3)}", c=c))
            elif r < 0.38:
                oid = f"o{day}-{i}"
                out.append(ev("order_created", stamp, order_id=oid, customer_id=c, amount=10 + i % 7))
                if rnd.random() < 0.5:
                    out.append(ev("order_paid", stamp, order_id=oid, customer_id=c, amount=10 + i % 7))
            else:
                out.append(cust(stamp, c=c))
    for _ in range(20):      # a little out of order, within the lateness
        i = rnd.randrange(len(out) - 2)
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


def test_views_across_daily_sweeps_equal_a_pass_over_every_customer():
    """The daily sweep keeps the look-aheads of the customers it did not rewrite (all of
    them were dropped before, and the next view passed over every customer): the views
    and provisional notes across four midnights must equal a pass over every customer
    each time and look-aheads done again from scratch."""

    nonzero, notes = _nonzero, _ahead_notes

    for seed in (1, 2):
        lines = _days_stream(seed)
        every = resumed, redone, scanned = _three_ways(Params(wait_checks_s=(180.0,)))
        sweeps = resumed.ledger.next_sweep
        kept_over_a_sweep = 0
        for i in range(0, len(lines), 5):
            for p in every:
                for line in lines[i:i + 5]:
                    p.feed_line(line)
                p.drain_changes()
            if resumed.ledger.next_sweep != sweeps:         # a sweep ran in this batch
                sweeps = resumed.ledger.next_sweep
                kept_over_a_sweep += len(resumed._ahead)
            now = resumed.max_ts + 1_000_000
            assert nonzero(resumed.view(now)) == nonzero(redone.view(now)) == nonzero(scanned.view(now))
            assert notes(resumed) == notes(redone) == notes(scanned)
        end = at("2026-11-08T00:00:00")
        assert nonzero(resumed.view(end)) == nonzero(redone.view(end)) == nonzero(scanned.view(end))
        assert resumed.ledger.next_sweep > at("2026-11-06T00:00:00")     # three midnights swept
        assert kept_over_a_sweep > 0        # look-aheads were kept over a sweep, not all dropped


def _lookups(p):
    asked = []
    p.seen_before = lambda eid: asked.append(eid) or False     # an empty store, which notes what it was asked
    p.track_ids = True
    return asked


def test_a_duplicate_older_than_the_horizon_is_found_among_the_ids_not_yet_stored():
    p = Pipeline(Params())
    asked = _lookups(p)
    first = ev("order_created", "2026-11-01T10:00:00", order_id="o1", customer_id="c1", amount=5, event_id="old")
    p.feed_line(first)
    for day in range(2, 6):      # the daily sweeps forget ids older than two days
        p.feed_line(cust(f"2026-11-0{day}T10:00:00", c=f"c{day}"))
    assert "c1" not in p.ledger.customers or "old" not in p.ledger.customers["c1"].recent_ids
    assert p.ids_from > at("2026-11-01T10:00:00")      # forgotten from memory
    p.feed_line(first)           # the store has not been given it yet (`drain_fresh_ids`)
    assert p.stats.duplicates == 1 and asked == []
    assert p.drain_fresh_ids().get("old") == at("2026-11-01T10:00:00")
    p.feed_line(first)           # drained, so stored: the store is asked
    assert asked == ["old"] and p.stats.duplicates == 1     # (this store says no)


def test_an_input_read_ahead_does_not_send_the_others_events_to_the_store():
    """The stream's time is the slowest input's: ids are forgotten by it, and an event is
    looked up only if it is older than the ids forgotten, not older than the newest
    event less the horizon (the worker read agent-keyed reviews days ahead, and every
    chat and order event behind them was looked up)."""
    p = Pipeline(Params())
    p.expected_inputs = frozenset({"chat", "orders"})
    asked = _lookups(p)
    p.feed_line(ev("order_created", "2026-11-09T10:00:00", order_id="o9", customer_id="c9", amount=5), "orders")
    for hour in range(10, 20):
        p.feed_line(cust(f"2026-11-02T{hour}:00:00", c=f"c{hour}"), "chat")
    assert p.stats.applied == 11
    # ids are forgotten by the chat input's time, a week behind: none of its events is older
    assert asked == [] and p.ids_from < at("2026-11-02T10:00:00") - 2 * 86400 * 1_000_000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["chat", "orders", "feedback", "reviews"]),
                          st.integers(0, 4 * 3600), st.booleans(), st.sets(st.sampled_from(["chat", "orders"]))),
                min_size=1, max_size=120))
def test_the_stream_time_of_several_inputs_is_that_of_the_slowest_one_not_idle(items):
    """`_accept` keeps the slowest input instead of computing it for every event; the
    events counted late must be those the definition gives: older than the slowest
    expected input not idle (or the newest event, if all are idle) less the lateness."""
    p = Pipeline(Params())
    p.expected_inputs = frozenset({"chat", "orders", "feedback"})
    tops, newest, late = {}, None, 0
    idle = frozenset()
    for i, (source, second, new_share, idle_now) in enumerate(items):
        if new_share:           # the worker passes a new set of idle inputs with each share
            idle = frozenset(idle_now)
        ts = at(f"2026-11-03T08:00:00") + second * 1_000_000
        newest = ts if newest is None else max(newest, ts)
        tops[source] = max(tops.get(source, -1), ts)
        slowest = min((tops.get(s, -1) for s in p.expected_inputs if s not in idle), default=newest)
        late += ts < min(newest, slowest) - 600 * 1_000_000
        p.feed_line(cust(f"2026-11-03T{8 + second // 3600:02d}:{second % 3600 // 60:02d}:{second % 60:02d}",
                         c=f"c{i}"), source, idle)
    assert p.stats.applied == len(items)
    assert p.stats.late == late
