"""The pipeline: decode, de-duplicate, put back in event-time order, apply.

`Pipeline` chains the pure parts: the ledger for customer-keyed events, the
desk for agent-keyed ones, the book for the sums.  A customer's event is held
in that customer's state until the newest event time seen is `allowed_lateness`
past it, then applied in event-time order with the customer's timers, so any
arrival order within the lateness gives the result of the in-order stream.  An
event already older than that is counted late and applied at once, as well as
it can be.  The desk's results do not depend on order, so it applies at once.

Equal event times are ordered by a fixed rank (chat before orders, an order's
creation before its payment, …) and then by `event_id`, so the result never
depends on arrival order.

Everything a customer needs (held events, timers, recent event ids for
de-duplication) lives in its own state, so one `Pipeline` can run per Kafka
partition, or one for a whole file.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .book import KpiBook
from .desk import AgentDesk
from .due import DueQueue
from .events import EVENT_TYPES, Event, ImprovementPlanSubmitted, Message, Rejected, decode
from .ledger import ORDER_FOLLOW_UPS, CustomerLedger
from .params import US, Params
from .shopclock import EPOCH as _EPOCH, ONE_US as _ONE_US, ShopClock

# Agent-keyed events need no customer state and no ordering (the desk is order-independent).
_AGENT_KEYED = frozenset(EVENT_TYPES[t] for t in ("qa_check", "report_submitted", "report_audited", "self_review",
                                                  "manager_review", "goal_set", "improvement_plan_submitted"))
# Rank among equal event times: a customer's message before the reply to it,
# a reply before the order it earns, an order's creation before what follows it.
_SENDER_RANK = {"customer": 0, "bot": 1, "agent": 2}
_RANK = {EVENT_TYPES[t]: r for t, r in (("order_created", 3), ("order_paid", 4), ("order_refunded", 5),
                                        ("order_cancelled", 5), ("order_flagged", 5), ("complaint", 6),
                                        ("rating", 7))}


@dataclass
class Stats:
    read: int = 0
    applied: int = 0
    duplicates: int = 0
    late: int = 0
    types: Counter = field(default_factory=Counter)     # SPEC §2 type -> valid events read
    rejected: Counter = field(default_factory=Counter)  # reason (values elided) -> count

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


_ALL = 1 << 62
_TAG = {cls: tag for tag, cls in EVENT_TYPES.items()}


class _Ahead:
    """One customer's look-ahead, kept to be resumed: its facts and notes so far, the copy
    it ran (the customer as if all its held events were applied and timers fired), the
    last held item it applied and the latest timer it fired."""

    __slots__ = ("facts", "cust", "last", "fired", "notes", "marks", "kept", "kept_notes", "came")

    def __init__(self, facts, cust, last, fired, notes, marks):
        self.facts, self.cust, self.last, self.fired, self.notes = facts, cust, last, fired, notes
        self.marks = marks      # (time, facts, notes so far) after each step, in time order
        self.kept = self.kept_notes = 0     # facts[:kept], notes[:kept_notes]: since applied for real
        self.came: list = []    # items held for the customer since (some may be applied already)

    def live_facts(self) -> list:
        return self.facts[self.kept:]

    def live_notes(self) -> list:
        return self.notes[self.kept_notes:]

    def applied_for_real(self, upto: int) -> list:
        """Mark the steps at or before `upto` (the stream has applied them since, and
        its book and notes have them) as no longer the look-ahead's; return their facts."""
        marks = self.marks
        k = bisect.bisect_right(marks, (upto, 1 << 62))
        if not k:
            return []
        _, cut, cut_notes = marks[k - 1]
        out = self.facts[self.kept:cut]
        self.kept, self.kept_notes = cut, cut_notes
        if k > 64 and 2 * k > len(marks):      # let go of what no longer counts
            self.facts, self.notes = self.facts[cut:], self.notes[cut_notes:]
            self.marks = [(t, n - cut, m - cut_notes) for t, n, m in marks[k:]]
            self.kept = self.kept_notes = 0
        return out

    @property
    def due(self) -> int | None:
        """The copy's next timer."""
        return self.cust.timers[0][0] if self.cust.timers else None


def _needs_ahead(cust, now: int) -> bool:
    """A customer a look-ahead at `now` must run: events held, or a timer due."""
    return bool(cust.pending or (cust.timers and cust.timers[0][0] <= now))


class Pipeline:
    """Events in, KPI book out; pure except for the optional `seen_before` port."""

    resume_look_ahead = True    # False: every look-ahead of a changed customer is done again (a test's reference)
    # µs: a customer's held events are applied together once the oldest is this far past
    # the allowed lateness (`CustomerLedger.release`).  0 applies each as soon as it is
    # due; an owner that writes every changed customer sets more (the worker: 30 s), so
    # a customer writing every few seconds is written once for several of its events.
    # What a view shows is the same either way: it looks ahead over what is held.
    gather = 0

    def __init__(self, params: Params | None = None,
                 seen_before: Callable[[str], bool] | None = None) -> None:
        """`seen_before(event_id)` answers for ids older than the in-memory horizon;
        set `track_ids` to collect accepted ids (`drain_fresh_ids`) for a store to keep.  Ids
        collected and not yet drained count as seen too: the in-memory horizon can pass an id
        before its owner has stored it (a file read twice in one replay applied the second
        copy of every event older than two days)."""
        self.params = params or Params()
        self.clock = ShopClock(self.params)
        self.ledger = CustomerLedger(self.params, self.clock)
        self.desk = AgentDesk(self.clock)
        self.book = KpiBook()
        self.stats = Stats()
        self.seen_before = seen_before
        self.lateness = round(self.params.allowed_lateness_s * US)
        self.horizon = round(self.params.dedup_horizon_s * US)
        self.max_ts: int | None = None
        # Every applied event at or after this time still has its id in memory; the daily
        # sweep forgets those older (`seen_before` knows them).  None: nothing forgotten yet.
        # (Not `max_ts` less the horizon: an input read ahead of the others, agent-keyed
        # reviews in the worker, moves max_ts days ahead, and every event of the inputs
        # behind was then looked up in the store, a third of the worker's rate.)
        self.ids_from: int | None = None
        self.track_ids = False
        self.input_max: dict[str, int] = {}        # newest event time per input, when there are several
        self.expected_inputs: frozenset[str] = frozenset()
        self._forget_slowest()
        self.fresh_ids: dict[str, int] = {}        # event_id -> ts accepted since the owner last drained them
        self.closed_months: frozenset[str] = frozenset()   # set by the owner: months already closed
        self.post_close: list[dict] = []            # accepted events of those months, to record
        self._reset_look_ahead()

    def _forget_slowest(self) -> None:
        # `_accept`'s slowest input, and the inputs it is the slowest of: those expected and
        # not idle, for this `idle` and these `expected_inputs` (both compared by identity)
        self._slowest: int | None = None
        self._idle_seen = self._expected_seen = None
        self._active: list[str] = []

    def _reset_look_ahead(self) -> None:
        # view()'s memo while changes are tracked: customer -> (facts of its held events and
        # due timers, its next timer), their sum, and customers changed since the last view
        self._ahead: dict[str, _Ahead] = {}
        self._ahead_book = KpiBook()
        self._dirty: set[str] = set()
        self._ahead_now = -1
        # Once a view has looked at every customer, the next look only at what can have
        # changed: customers changed since, kept look-aheads whose copy has a timer due,
        # and customers without one whose earliest timer comes due; a pass over all
        # customers cost what the shop has in memory at every refresh.
        self._ahead_complete = False
        self._ahead_due = DueQueue()
        self._wake = DueQueue()
        # customer -> the notes of its latest look-ahead ([] once it has none), since the owner
        # last drained them; None: notes not wanted
        self.ahead_notes: dict | None = {} if getattr(self, "ahead_notes", None) is not None else None

    # -- persistence ----------------------------------------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        for transient in ("clock", "seen_before", "fresh_ids", "track_ids", "closed_months", "post_close",
                          "_slowest", "_idle_seen", "_expected_seen", "_active",
                          "_ahead", "_ahead_book", "_dirty", "_ahead_now", "ahead_notes"):
            state.pop(transient)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "ids_from" not in state:
            self.assume_ids_forgotten()     # saved before it was kept
        self.clock = ShopClock(self.params)
        self.ledger.clock = self.desk.clock = self.clock
        self.seen_before, self.fresh_ids, self.track_ids = None, {}, False
        self._forget_slowest()
        self.closed_months, self.post_close = frozenset(), []
        self._reset_look_ahead()

    def assume_ids_forgotten(self) -> None:
        """For a state saved without `ids_from`: the newest event less the horizon, which is
        at or after every bound the sweep used (safe: more lookups, never a duplicate missed)."""
        self.ids_from = None if self.max_ts is None else self.max_ts - round(self.params.dedup_horizon_s * US)

    # -- input ----------------------------------------------------------------

    def feed_line(self, line: bytes | str, source: str | None = None, idle=()) -> Rejected | None:
        """Decode and feed one JSON line; return the rejection if it was bad.

        `source` names the input it came from when there are several (Kafka topics
        read at their own pace): the stream's time is then the slowest input's, so
        one topic read ahead of another does not make the other's events late.
        Inputs in `idle` (nothing new for a while) are left out of that minimum."""
        self.stats.read += 1
        event = decode(line)
        if isinstance(event, Rejected):
            self.stats.rejected[event.kind] += 1
            return event
        self.stats.types[_TAG[type(event)]] += 1
        self._accept(event, source, idle)
        return None

    def _accept(self, event: Event, source: str | None = None, idle=()) -> None:
        # The hot path: every event passes here, so lookups are inlined.
        ts = (event.ts - _EPOCH) // _ONE_US     # shopclock.to_us
        eid = event.event_id
        kind = type(event)
        ledger = self.ledger
        if kind in _AGENT_KEYED:
            cid = cust = None
            ids = self.desk.file(event.agent_id).recent_ids
            if self.desk.changed is not None:
                self.desk.changed.add(event.agent_id)
        else:
            cid = event.customer_id
            cust = ledger.customers.get(cid) or ledger.customer(cid)
            ids = cust.recent_ids
            if ledger.changed is not None:
                ledger.changed.add(cid)
        max_ts = self.max_ts
        if eid in ids or (self.ids_from is not None and ts < self.ids_from and (
                eid in self.fresh_ids or self.seen_before is not None and self.seen_before(eid))):
            # Older than the in-memory horizon: the store has every id it applied, but
            # those accepted since its owner last drained them.
            self.stats.duplicates += 1
            return
        ids[eid] = ts
        if self.track_ids:
            self.fresh_ids[eid] = ts
        if self.closed_months and kind is not ImprovementPlanSubmitted:
            self._note_post_close(event, kind, ts, cust)
        stats = self.stats
        stats.applied += 1  # accepted: it will be applied, in event-time order
        if max_ts is None or ts > max_ts:
            self.max_ts = max_ts = ts
        if source is None:
            watermark = max_ts - self.lateness
        else:
            tops = self.input_max
            top = tops.get(source, -1)
            if ts > top:
                tops[source] = ts
            # The slowest input only moves when the input at it moves, or other inputs
            # count as idle: computed again only then (for every event, a tenth of the
            # worker's feed).  An expected input not heard from yet holds everything back
            # (-1); with every input idle, the newest event leads (None).
            slowest = self._slowest
            if idle is not self._idle_seen or self.expected_inputs is not self._expected_seen:
                self._idle_seen, self._expected_seen = idle, self.expected_inputs
                self._active = [s for s in self.expected_inputs if s not in idle]
                slowest = self._slowest = min([tops.get(s, -1) for s in self._active], default=None)
            elif ts > top and (slowest is None or top <= slowest):
                slowest = self._slowest = min([tops.get(s, -1) for s in self._active], default=None)
            watermark = (max_ts if slowest is None or slowest > max_ts else slowest) - self.lateness
        if ts < watermark:
            stats.late += 1
        if cust is None:
            facts = self.desk.apply(event, ts)
            self.book.add_all(facts)
            if ledger.trace is not None and facts:
                ledger.trace.append((eid, facts))
        else:
            rank = _SENDER_RANK[event.sender] if kind is Message else _RANK[kind]
            item = (ts, rank, eid, event)
            ledger.hold(cid, cust, item)
            if (entry := self._ahead.get(cid)) is not None:
                entry.came.append(item)     # a resumed look-ahead must find every one still held (a
                #                             late event is applied at once below: its look-ahead is done again)
        gather = self.gather
        if ledger.held and ledger.held[0][0] < watermark - gather or ledger.due and ledger.due[0][0] < watermark:
            self.book.add_all(ledger.release(watermark, gather=gather))
        if watermark >= ledger.next_sweep:
            if gather:      # what is forgotten is judged on the state of every event due applied
                self.book.add_all(ledger.release(watermark))
            # The look-aheads of customers the sweep rewrote are done again (marked for
            # the next view; not changed for their owner, who need not write them: see
            # `CustomerLedger._sweep`); the others' copies still hold.  (Every
            # look-ahead was dropped before, and the next view passed over every customer:
            # in a backlog, at every event day.)
            for c in ledger.sweep(watermark, self.horizon):
                if c in self._ahead:
                    self._forget_ahead(c)
                    self._dirty.add(c)
            oldest_id = watermark - self.horizon        # (the ledger's sweep forgot those before it too)
            self.desk.prune_ids(oldest_id)
            if self.ids_from is None or oldest_id > self.ids_from:
                self.ids_from = oldest_id

    def _note_post_close(self, event: Event, kind: type, ts: int, cust) -> None:
        """SPEC §5: an event for a closed month, accepted after its close, is applied to the live
        KPIs, never to the close; the owner records it.  It is judged as it arrives, since
        what arrived before the close is in it (its KPIs include what was still held).  A
        review counts for its period; an order's later event for the order's month (a December
        refund of a November order; not recorded if the order's creation has not arrived or the
        order is forgotten by then: it changes no figure of the month); a plan is due after the
        close, so it is no adjustment."""
        if kind in ORDER_FOLLOW_UPS:
            credit = self.ledger.order_credit(cust, event.order_id, ts)
            if credit is None:
                return
            month, agent = credit
        else:
            month, agent = getattr(event, "period", None) or self.clock.day(ts)[:7], getattr(event, "agent_id", None)
        if month in self.closed_months:
            self.post_close.append({"event_id": event.event_id, "period": month, "type": _TAG[kind], "ts_us": ts,
                                    "agent_id": agent, "customer_id": getattr(event, "customer_id", None)})

    def view(self, until: int | None = None, month: str | None = None, notes: list | None = None) -> KpiBook:
        """The book as `finish(until)` would leave it, without changing anything: held
        events are applied and due timers fired on copies of the customers concerned.
        With `month`, only that month's buckets are copied (others may get the facts
        of held events).  With `notes` (a list; changes not tracked), the notes those
        copies write are added to it.

        While changes are tracked (a worker asking every second), each customer's
        look-ahead is kept and resumed (or redone) only when the customer changed or one of its
        timers came due, so a view costs what changed since the last one, not what
        is held."""
        now = until if until is not None else self.max_ts
        book = self.book.copy(month)
        if now is None:
            return book
        ledger = self.ledger
        if ledger.changed is None:
            twin = ledger.shadow(self._concerned(now))
            twin.notes = notes
            book.add_all(twin.release(_ALL, now))
        else:
            self._look_ahead(now)
            book.add_buckets(self._ahead_book.stated)
        return book

    def ahead_months(self) -> set[str]:
        """The months ("YYYY-MM") the latest view's look-ahead added facts to (changes tracked)."""
        return {period[:7] for _, period in self._ahead_book.stated}

    def _concerned(self, now: int) -> set[str]:
        """Customers with held events or a timer due by `now`: one pass over the customers
        (the index heaps hold an entry per held event and timer, many more)."""
        return {cid for cid, c in self.ledger.customers.items() if _needs_ahead(c, now)}

    def _take_dirty(self) -> set[str]:
        """Customers changed since the last look-ahead (drained or not yet)."""
        ledger = self.ledger
        dirty = self._dirty | ledger.changed | ledger.removed
        self._dirty = set()
        return dirty

    incremental_view = True     # tests compare with a pass over every customer each time

    def _look_ahead(self, now: int) -> None:
        if now < self._ahead_now:      # the memo holds timers fired up to a later time: start over
            self._reset_look_ahead()
        self._ahead_now = now
        if not (self._ahead_complete and self.incremental_view):
            self._look_at_all(now)
            return
        ahead, dirty, customers = self._ahead, self._take_dirty(), self.ledger.customers
        again, fresh = self._sort_changed(dirty, now)
        again.update(cid for cid in self._ahead_due.pop_due(now) if cid in ahead)
        for cid in self._wake.pop_due(now):
            cust = customers.get(cid)
            if cid not in ahead and cid not in dirty and cust is not None and _needs_ahead(cust, now):
                fresh.append(cid)
        self._resume_or_redo(list(again), now)
        self._ahead_for(fresh, now)

    def _sort_changed(self, dirty: set, now: int) -> tuple[set, list]:
        """Of the customers changed since the last look: forget the look-ahead of those with
        nothing to look ahead at (queued for their next timer); return (those with a kept
        look-ahead to bring up, those to look ahead at afresh)."""
        ahead, customers = self._ahead, self.ledger.customers
        again, fresh = set(), []
        for cid in dirty:
            cust = customers.get(cid)
            if cust is None or not _needs_ahead(cust, now):
                if cid in ahead:
                    self._forget_ahead(cid)
                if cust is not None:
                    self._queue_wake(cid, cust)
            elif cid in ahead:
                again.add(cid)
            else:
                fresh.append(cid)
        return again, fresh

    def _look_at_all(self, now: int) -> None:
        """The look-ahead of every customer concerned, by one pass over all of them."""
        concerned = self._concerned(now)
        ahead, dirty = self._ahead, self._take_dirty()
        again = []
        for cid, entry in list(ahead.items()):
            if cid not in concerned:
                self._forget_ahead(cid)
            elif cid in dirty or ((due := entry.due) is not None and due <= now):
                again.append(cid)
        self._resume_or_redo(again, now)
        self._ahead_for([cid for cid in concerned if cid not in ahead], now)
        self._ahead_due, self._wake = DueQueue(), DueQueue()
        for cid, entry in ahead.items():
            self._queue_due(cid, entry)
        for cid, cust in self.ledger.customers.items():
            if cid not in ahead:
                self._queue_wake(cid, cust)
        self._ahead_complete = True

    def _queue_due(self, cid: str, entry: _Ahead) -> None:
        """Look at this kept look-ahead again when its copy's next timer comes due."""
        if (due := entry.due) is not None:
            self._ahead_due.put(cid, due)

    def _queue_wake(self, cid: str, cust) -> None:
        """Look at this customer (no held events) when its earliest timer comes due."""
        if cust.timers:
            self._wake.put(cid, cust.timers[0][0])

    def _forget_ahead(self, cid: str) -> None:
        self._ahead_book.take_back(self._ahead.pop(cid).live_facts())
        self._ahead_due.discard(cid)
        if self.ahead_notes is not None:
            self.ahead_notes[cid] = []

    @property
    def looked_ahead_until(self) -> int:
        """The time of the latest look-ahead (-1: none kept); one as of an earlier time starts them all over."""
        return self._ahead_now

    def look_ahead_changed(self, now: int) -> None:
        """The look-ahead of `view`, for the customers changed since the last one only
        (while changes are tracked): their notes come out at once, at the cost of what
        changed, for an owner that wants alerts sooner than it wants a view."""
        if self.ledger.changed is None or now < self._ahead_now:
            return                      # the next view starts over
        self._ahead_now = now
        again, fresh = self._sort_changed(self._take_dirty(), now)
        self._resume_or_redo(list(again), now)
        self._ahead_for(fresh, now)

    def _resume_or_redo(self, cids: list, now: int) -> None:
        """Bring these customers' kept look-aheads to `now`: resumed with what came since,
        when that all comes after what they applied and fired, else done again.  A customer
        writing every few seconds with no reply holds every message of the allowed lateness,
        and doing its look-ahead again each time cost what it holds (the alert latency grew
        with the minutes of a steady load)."""
        if not cids:
            return
        redo, twin = [], None
        for cid in cids:
            entry = self._ahead[cid]
            new = self._since(cid, entry, now) if self.resume_look_ahead else None
            if new is None:
                self._forget_ahead(cid)
                redo.append(cid)
                continue
            if twin is None:
                twin = self.ledger.shadow(())
            self._resume(twin, cid, entry, new, now)
        self._ahead_for(redo, now)

    def _since(self, cid: str, entry: _Ahead, now: int) -> list | None:
        """The held items a look-ahead has not applied, if it can take them from where it
        stands: each still held, after every item it applied and every timer it fired, and
        no timer of its copy due by `now` before the last item it applied; else None.
        Only what came since is looked at: the copy applied everything held when it ran."""
        if cid not in self.ledger.customers:
            return None
        last, new, applied_before = entry.last, entry.came, self.ledger.applied_before
        for item in new:
            if item[0] < applied_before:
                return None             # applied for real since (or may have been)
            if last is not None and item <= last:
                return None             # sorts before what it applied
            if item[0] < entry.fired:
                return None             # before a timer it fired
        due = entry.due
        if due is not None and due <= now and last is not None and due <= last[0]:
            return None                 # a timer that should have fired before an item it applied
        return new

    def _resume(self, twin, cid: str, entry: _Ahead, new: list, now: int) -> None:
        cust = entry.cust
        for item in new:
            heapq.heappush(cust.pending, item)
        if new:
            entry.last = max(new)
        entry.came = []
        twin.customers = {cid: cust}
        twin.notes, twin.fired_upto, twin.marks = entry.notes, entry.fired, entry.marks
        facts = entry.facts
        start = len(facts)
        twin._run(cid, cust, _ALL, now, facts)
        entry.fired = twin.fired_upto
        self._queue_due(cid, entry)
        self._ahead_book.add_all(facts[start:])
        # Every step at or before what the stream has applied for real since is the stream's,
        # not the look-ahead's: those of earlier runs, and those this run took (a timer the
        # stream fired in the batch that brought the new events).  Marked after the run, so
        # both at once.  (Found by the sweeps test: marked before the run only, a wait's note
        # stayed provisional after the stream had written it.)
        self._ahead_book.take_back(entry.applied_for_real(self._applied_upto(cid)))
        if self.ahead_notes is not None:
            self.ahead_notes[cid] = entry.live_notes()

    def _applied_upto(self, cid: str) -> int:
        """The time up to which the stream has applied this customer's events and fired its
        timers: before its earliest held event and timer (events apply and timers fire in
        time order), and never before the ledger's cut for every customer.  A customer run
        while others wait to be gathered is ahead of that cut."""
        ledger = self.ledger
        cust, upto = ledger.customers.get(cid), _ALL
        if cust is not None:
            if cust.pending:
                upto = cust.pending[0][0] - 1
            if cust.timers and cust.timers[0][0] - 1 < upto:
                upto = cust.timers[0][0] - 1
        return max(ledger.released_upto, upto)

    def _ahead_for(self, fresh: list, now: int) -> None:
        ahead, book = self._ahead, self._ahead_book
        twin = self.ledger.shadow(fresh)
        notes = self.ahead_notes
        for cid in fresh:
            cust = twin.customers.get(cid)
            if cust is not None:
                facts: list = []
                own: list = []
                twin.notes = own
                last = max(cust.pending) if cust.pending else None
                twin.fired_upto, twin.marks = -1, []
                twin._run(cid, cust, _ALL, now, facts)
                entry = ahead[cid] = _Ahead(facts, cust, last, twin.fired_upto, own, twin.marks)
                self._queue_due(cid, entry)
                if notes is not None:
                    notes[cid] = list(own)
                book.add_all(facts)

    def collect_notes(self) -> None:
        """Have the ledger write notes (for the rules), and the look-ahead of `view` too:
        for each customer looked at again, the notes its held events and due timers
        give as of then.  They are provisional: the next look-ahead of that customer
        replaces them (an event arrived late changes what it saw), and the notes of
        applied events are final."""
        self.ledger.notes = []
        self.ahead_notes = {}

    def drain_notes(self) -> tuple[list, dict]:
        """(notes of events applied since the last call, in time order;
        {customer: the notes of its latest look-ahead} for those looked at again)."""
        applied, ahead = self.ledger.notes or [], self.ahead_notes or {}
        if applied:
            self.ledger.notes = []
        if ahead:
            self.ahead_notes = {}
        return applied, ahead

    def track_changes(self) -> None:
        """Start recording what changes, for an owner that mirrors the state elsewhere."""
        self.ledger.changed, self.ledger.removed = set(), set()
        self.desk.changed, self.book.changed = set(), set()
        if self.ledger.fresh is None:
            self.ledger.fresh, self.ledger.unheld = [], []

    def drain_held(self) -> tuple[list[tuple[str, tuple]], list[tuple[str, str]]]:
        """Since last asked, while changes are tracked: (customer_id, item) of every event
        held, and (customer_id, event_id) of every held event applied."""
        ledger = self.ledger
        out = (ledger.fresh or [], ledger.unheld or [])
        ledger.fresh, ledger.unheld = [], []
        return out

    def oldest_held(self) -> int | None:
        """The event time of the oldest event still held (every event stamped before it is applied)."""
        held = self.ledger.held
        return held[0][0] if held else None

    def drain_changes(self) -> tuple[set, set, set, set]:
        """(customers changed, customers removed, agents changed, book buckets changed) since last asked."""
        out = (self.ledger.changed, self.ledger.removed, self.desk.changed, self.book.changed)
        # For the next view's look-ahead: the customers changed, and those removed that it
        # has something to forget for (a kept look-ahead).  A customer gone from memory
        # with none leaves, as the look-ahead would do nothing for it: a backlog looks
        # ahead rarely and forgets a month's customers at each month-end, and every one
        # of them stayed here until the next look (the 75-day backlog: up to 21,200).
        dirty, customers, ahead = self._dirty, self.ledger.customers, self._ahead
        dirty |= out[0]
        for cid in out[1]:
            if cid in customers or cid in ahead:
                dirty.add(cid)
            else:
                dirty.discard(cid)
        self.track_changes()
        return out

    def finish(self, until: int | None = None) -> None:
        """Apply every held event and fire what time decides up to `until`
        (default: the newest event time seen).  Used at the end of a replay."""
        now = until if until is not None else self.max_ts
        if now is not None:
            self.book.add_all(self.ledger.release(_ALL, now))

    def drain_fresh_ids(self) -> dict[str, int]:
        """The ids accepted since last asked (event_id -> ts), while `track_ids` is on."""
        out, self.fresh_ids = self.fresh_ids, {}
        return out

    def run(self, lines: Iterable[bytes | str], until: int | None = None) -> "Pipeline":
        """Feed every line, then finish; convenient for tests and small files."""
        for line in lines:
            self.feed_line(line)
        self.finish(until)
        return self
