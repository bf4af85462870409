"""Per-customer state: waits, replies, inquiries and orders (SPEC §3.1, §3.2, §3.3).

Everything here is keyed by customer, so under Kafka it lives in the partition
of the customer's key.  `CustomerLedger.apply` takes the events of the chat,
orders and feedback topics in event-time order and returns the facts they
imply; `advance` fires what time alone decides (an unanswered wait, the end of
an inquiry's window) and forgets customers with nothing left open.

When `notes` is a list, the ledger also writes down what a supervisor may need
to hear about at once (see `Note`): a response with its time, a wait open
for one of `Params.wait_checks_s` and its end (the reply, or the wait counted
unanswered), a credited complaint, a flagged order.  Notes are observations for
the rules; they change no KPI.
"""

from __future__ import annotations

import copy
import heapq
from dataclasses import dataclass, field

import msgspec

from .events import (Complaint, Event, Message, OrderCancelled, OrderCreated, OrderFlagged, OrderPaid,
                     OrderRefunded, Rating)
from .facts import Fact
from .params import US, Params
from .shopclock import ShopClock

WITHIN_3MIN_US = 180 * US
_NOT_MARKED = "\0"  # a wait not (yet) counted as unanswered; None means "counted for the shop alone"
# What the sweep forgets (`_sweep`): a conversation with no open wait idle this long (a
# customer writing in it again starts afresh), an order never created this long after
# its first event.
_CONVERSATION_IDLE = 2 * 86400 * US
_UNCREATED_ORDER_WAIT = 7 * 86400 * US


def _forgotten(conv: "Conversation", now: int) -> bool:
    """Whether the sweep as of `now` forgets a conversation: no open wait, idle too long."""
    return conv.wait is None and now - conv.touched > _CONVERSATION_IDLE


# A note: {"kind": "response" | "wait" | "complaint" | "order_flagged", "ts": µs,
# "agent_id": credited agent or None, "customer_id": …, and the kind's own fields}.
Note = dict


def fen(amount: float) -> int:
    """CNY as integer fen, so that sums of money are exact."""
    return round(amount * 100)


@dataclass(slots=True)
class Wait:
    opened: int          # ts of the customer message that opened it
    start: int           # effective start (next service-hours opening when opened outside)
    day: str             # day of the effective start: where an unanswered wait counts
    unanswered_who: str | None = _NOT_MARKED
    reported: float = 0  # the longest wait check noted (seconds of service hours)


@dataclass(slots=True)
class Conversation:
    wait: Wait | None = None
    last_human: str | None = None
    first_reply_days: set[str] = field(default_factory=set)
    touched: int = 0


@dataclass(slots=True)
class Inquiry:
    agent: str
    day: str
    first_reply: int
    end: int             # end of the following day: the conversion window closes
    counted: bool        # False while it is an after-sales reception
    orders: set[str] = field(default_factory=set)  # credited orders created in the window
    converted: bool = False


@dataclass(slots=True)
class Order:
    created: bool = False
    agent: str | None = None
    day: str = ""
    created_ts: int = 0
    amount: int = 0
    paid_ts: int | None = None
    paid: int = 0
    refunded: int = 0
    has_refund: bool = False
    cancelled: bool = False
    flagged: bool = False
    seen_ts: int = 0

    def indicators(self) -> tuple[bool, bool, bool, bool]:
        """(paid, refunded, abnormal, valid) as SPEC §3.2 defines them."""
        if not self.created:
            return False, False, False, False
        paid = self.paid_ts is not None
        return (paid, paid and self.has_refund, self.flagged,
                paid and not self.cancelled and not self.flagged and self.refunded < self.paid)


_INDICATORS = ("paid_orders", "refunded_orders", "abnormal_orders", "valid_orders")
# An order's later events: they count for the month the order was created in (SPEC §3.2)
ORDER_FOLLOW_UPS = frozenset((OrderPaid, OrderRefunded, OrderCancelled, OrderFlagged))


@dataclass(slots=True)
class Customer:
    last_reply_agent: str | None = None
    last_reply_ts: int = 0
    conversations: dict[str, Conversation] = field(default_factory=dict)
    served: dict[str, set[str]] = field(default_factory=dict)   # day -> agents who gave a human reply
    inquiries: list[Inquiry] = field(default_factory=list)
    orders: dict[str, Order] = field(default_factory=dict)
    paying: set[tuple[str | None, str]] = field(default_factory=set)  # (who, period) already counted
    touched: int = 0
    # Everything needed to resume this customer lives here, so the state can be
    # partitioned by customer (a Kafka partition, a Faust table key):
    pending: list[tuple] = field(default_factory=list)   # heap (ts, rank, event_id, event): held for ordering
    timers: list[tuple[int, str, tuple]] = field(default_factory=list)    # heap (due, kind, key)
    recent_ids: dict[str, int] = field(default_factory=dict)  # event_id -> ts, within the dedup horizon

    def credit(self, ts: int, lookback: int) -> str | None:
        """The agent of the most recent human reply within the look-back, if any."""
        if self.last_reply_agent is not None and ts - lookback <= self.last_reply_ts <= ts:
            return self.last_reply_agent
        return None


_NO_IDS: dict = {}
# A customer as MessagePack, its dataclasses encoded and decoded in C by msgspec
# (typed by the fields' annotations): 4-5 times faster than pickle, whose reduce of a
# slotted object builds a dict of its slots (measured on the 12,560 customers of 20
# agents x 6 days: 7.7 against 34 µs a customer written, 7.2 against 23 read).
_ENCODER = msgspec.msgpack.Encoder()
_CUSTOMER = msgspec.msgpack.Decoder(Customer)


def encode_customer(cust: Customer) -> bytes:
    """A customer without its held events and recent ids (kept apart by their owners)."""
    pending, ids = cust.pending, cust.recent_ids
    cust.pending, cust.recent_ids = [], _NO_IDS
    try:
        return _ENCODER.encode(cust)
    finally:
        cust.pending, cust.recent_ids = pending, ids


def decode_customer(value: bytes) -> Customer:
    """A customer from `encode_customer` (no held events, no recent ids)."""
    return _CUSTOMER.decode(value)


def _copy_customer(cust: Customer) -> Customer:
    """A copy a look-ahead may change (`CustomerLedger._run`): a deep copy, except that the
    held events are frozen and shared (a new heap of the same items) and the recent ids,
    which only acceptance and the daily sweep touch, are shared.  Copying the held events
    too made a look-ahead cost grow with them: a customer writing every few seconds
    with no reply holds hundreds within the allowed lateness."""
    twin = decode_customer(encode_customer(cust))
    twin.pending, twin.recent_ids = list(cust.pending), cust.recent_ids
    return twin


class CustomerLedger:
    """Per-customer state machine; pure, with time passed in."""

    fired_upto = -1     # the latest due time of a timer fired (a look-ahead resumes after it)
    released_upto = -1  # every held event and timer at or before this time has been applied (some later ones too)
    applied_before = -1  # a held event applied was stamped before this (one still held may be too)
    marks: list | None = None   # (time, facts, notes so far) after each event or timer `_run` applies, when kept

    def __init__(self, params: Params, clock: ShopClock | None = None) -> None:
        self.params = params
        self.clock = clock or ShopClock(params)
        self.customers: dict[str, Customer] = {}
        # Indexes only, rebuilt from the customers by `reindex`: one (ts, customer_id)
        # per held event, one (due, customer_id) per timer.
        self.held: list[tuple[int, str]] = []
        self.due: list[tuple[int, str]] = []
        self.next_sweep = 0   # forget idle customers once a day
        # Customers changed or removed since the owner last looked (`track_changes`):
        # what a durable mirror (a Faust table) must write.
        self.changed: set[str] | None = None
        self.removed: set[str] | None = None
        self.notes: list[Note] | None = None
        # (customer_id, item) of each event held since the owner last looked, when it writes
        # held events apart from their customers (`Pipeline.drain_held`)
        self.fresh: list[tuple[str, tuple]] | None = None
        # (customer_id, event_id) of each held event applied since, for the same owner
        self.unheld: list[tuple[str, str]] | None = None
        # (cause, facts) per applied event (its id) or fired timer, when an owner traces
        # which events a count came from (`cspulse explain --events`)
        self.trace: list[tuple[str, list[Fact]]] | None = None
        p = params
        self.lookback = round(p.attribution_hours * 3600 * US)
        self.after_sales = round(p.after_sales_days * 86400 * US)
        self.slow = round(p.slow_response_s * US)
        self.unanswered_after = round(p.unanswered_after_s * US)
        self.order_grace = round(p.order_grace_days * 86400 * US)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["clock"] = state["notes"] = state["trace"] = state["fresh"] = state["unheld"] = None
        return state

    def __setstate__(self, state):
        self.fresh = self.unheld = None
        self.__dict__.update(state)
        self.clock = ShopClock(self.params)
        self.trace = None

    # -- events ---------------------------------------------------------------

    def customer(self, cid: str) -> Customer:
        cust = self.customers.get(cid)
        if cust is None:
            cust = self.customers[cid] = Customer()
        return cust

    def hold(self, cid: str, cust: Customer, item: tuple) -> None:
        """Hold `(ts, rank, event_id, event)` until `release` reaches it."""
        heapq.heappush(cust.pending, item)
        heapq.heappush(self.held, (item[0], cid))
        if self.fresh is not None:
            self.fresh.append((cid, item))

    def release(self, before: int, timers_upto: int | None = None, gather: int = 0) -> list[Fact]:
        """Apply every held event stamped before `before` and fire every timer due
        at or before `timers_upto` (default: before `before`), customer by customer,
        each customer's events and timers in time order; return the facts.

        With `gather` (µs), a customer whose events are not due for a timer is left
        until its oldest held event is stamped before `before - gather`, and then all
        of them before `before` are applied at once: an owner writing each changed
        customer somewhere writes it once for several events instead of once each."""
        if timers_upto is None:
            timers_upto = before - 1
        cut = before - gather
        self.released_upto = max(self.released_upto, min(cut - 1, timers_upto))
        if before > self.applied_before:
            self.applied_before = before
        out: list[Fact] = []
        customers, held, due = self.customers, self.held, self.due
        while held and held[0][0] < cut:
            cid = heapq.heappop(held)[1]
            cust = customers.get(cid)
            if cust is not None and cust.pending and cust.pending[0][0] < cut:
                self._run(cid, cust, before, timers_upto, out)
        while due and due[0][0] <= timers_upto:
            cid = heapq.heappop(due)[1]
            cust = customers.get(cid)
            if cust is not None and cust.timers and cust.timers[0][0] <= timers_upto:
                self._run(cid, cust, before, timers_upto, out)
        return out

    def _run(self, cid: str, cust: Customer, before: int, timers_upto: int, out: list[Fact]) -> None:
        """Everything of one customer that is due, in time order; a timer fires before an
        event stamped at or after its due time."""
        if self.changed is not None:
            self.changed.add(cid)
        pending, timers, trace, marks = cust.pending, cust.timers, self.trace, self.marks
        while True:
            next_event = pending[0][0] if pending and pending[0][0] < before else None
            n = len(out)
            if timers and (timers[0][0] <= next_event if next_event is not None else timers[0][0] <= timers_upto):
                due, kind, key = heapq.heappop(timers)
                if due > self.fired_upto:
                    self.fired_upto = due
                if kind == "wait":
                    self._wait_expired(cid, cust, key, due, out)
                elif kind == "waiting":
                    self._still_waiting(cid, cust, key, due)
                else:
                    self._inquiry_ended(cust, key, out)
                eid = None
                if marks is not None:
                    marks.append((due, len(out), len(self.notes)))   # kept only where notes are
            elif next_event is not None:
                ts, _, eid, event = heapq.heappop(pending)
                if self.unheld is not None:
                    self.unheld.append((cid, eid))
                self._apply(cid, cust, event, ts, out)
                if marks is not None:
                    marks.append((ts, len(out), len(self.notes)))   # kept only where notes are
            else:
                return
            if trace is not None and len(out) > n:     # the event's id, or the timer and its customer
                trace.append((eid or (kind, cid), out[n:]))

    def _apply(self, cid: str, cust: Customer, event: Event, ts: int, out: list[Fact]) -> None:
        if ts > cust.touched:
            cust.touched = ts
        kind = type(event)
        if kind is Message:
            self._message(cid, event, ts, cust, out)
        elif kind is Complaint:
            who = self._credited(cust, event, ts)
            out.append((who, self.clock.day(ts), "complaints", 1))
            if self.notes is not None:
                self.notes.append({"kind": "complaint", "ts": ts, "agent_id": who, "customer_id": cid,
                                   "conversation_id": event.conversation_id, "category": event.category,
                                   "event_id": event.event_id})
        elif kind is Rating:
            day = self.clock.day(ts)
            out.append((event.agent_id, day, "ratings", 1))
            out.append((event.agent_id, day, "rating_sum", event.score))
        else:
            self._order_event(cid, event, ts, cust, out)

    def _credited(self, cust: Customer, event: Event, ts: int) -> str | None:
        """Who an order or a complaint is credited to (SPEC §3.2): its `agent_id` when given, else
        the agent of the customer's most recent human reply within the look-back."""
        return event.agent_id or cust.credit(ts, self.lookback)

    def _message(self, cid: str, m: Message, ts: int, cust: Customer, out: list[Fact]) -> None:
        conv = cust.conversations.get(m.conversation_id)
        # (one the sweep forgets by the start of this day is gone, whether it ran yet or not:
        # see `_expired`; judged at `ts` first, which it implies, to spare the clock)
        if conv is None or _forgotten(conv, ts) and _forgotten(conv, self.clock.day_start(ts)):
            conv = cust.conversations[m.conversation_id] = Conversation()
        conv.touched = ts
        if m.sender == "customer":
            if conv.wait is None:
                start = self.clock.effective_start(ts)
                conv.wait = Wait(ts, start, self.clock.day(start))
                # "not answered within" the limit: a reply exactly at the limit is in time,
                # so the timer is due one µs after it.
                self._timer(cid, cust, start + self.unanswered_after + 1, "wait", (m.conversation_id, ts))
                for check in self.params.wait_checks_s:
                    self._timer(cid, cust, self.clock.after_service(ts, check), "waiting",
                                (m.conversation_id, ts, check))
            return
        if m.sender != "agent" or m.auto_reply:
            return  # bots and canned replies leave the wait open
        agent, day = m.agent_id, self.clock.day(ts)
        before = conv.last_human        # whom a "still waiting" note named
        conv.last_human = agent
        cust.last_reply_agent, cust.last_reply_ts = agent, ts
        served = cust.served.get(day)
        if served is None:
            served = cust.served[day] = set()
            out.append((None, day, "served_customers", 1))
        if agent not in served:
            served.add(agent)
            out.append((agent, day, "served_customers", 1))
            self._open_inquiry(cid, cust, agent, day, ts, out)
        wait = conv.wait
        if wait is None:
            return
        conv.wait = None
        rt = max(0, ts - wait.start)
        if self.notes is not None:
            self.notes.append({"kind": "response", "ts": ts, "agent_id": agent, "customer_id": cid,
                               "conversation_id": m.conversation_id, "response_s": rt / US,
                               "first": day not in conv.first_reply_days})
            if wait.reported and wait.unanswered_who == _NOT_MARKED:    # (else closed when counted)
                self.notes.append({"kind": "wait", "ts": ts, "agent_id": before, "customer_id": cid,
                                   "conversation_id": m.conversation_id, "waited_s": rt / US, "open": False})
        out.append((agent, day, "responses", 1))
        out.append((agent, day, "response_time_us", rt))
        if rt > self.slow:
            out.append((agent, day, "slow_responses", 1))
        if rt <= WITHIN_3MIN_US:
            out.append((agent, day, "responses_within_3min", 1))
        if day not in conv.first_reply_days:
            conv.first_reply_days.add(day)
            out.append((agent, day, "first_responses", 1))
            out.append((agent, day, "first_response_time_us", rt))
        if wait.unanswered_who != _NOT_MARKED:
            if wait.unanswered_who != agent:  # the provisional credit moves to who answered
                out.append((wait.unanswered_who, wait.day, "unanswered", -1))
                out.append((agent, wait.day, "unanswered", 1))
        elif rt > self.unanswered_after:
            out.append((agent, wait.day, "unanswered", 1))

    def _open_inquiry(self, cid: str, cust: Customer, agent: str, day: str, ts: int, out: list[Fact]) -> None:
        after_sales = any(
            o.paid_ts is not None and ts - self.after_sales <= o.paid_ts <= ts and o.refunded < o.paid
            and (o.created or not self._expired(o, ts))     # (an order never created waits a week)
            for o in cust.orders.values()
        )
        inq = Inquiry(agent, day, ts, self.clock.end_of_next_day(ts), counted=not after_sales)
        cust.inquiries.append(inq)
        if inq.counted:
            out.append((agent, day, "inquiries", 1))
        self._timer(cid, cust, inq.end, "inquiry", (agent, day))

    def _order_event(self, cid: str, e: Event, ts: int, cust: Customer, out: list[Fact]) -> None:
        order = cust.orders.get(e.order_id)
        if order is None or self._expired(order, ts):
            order = cust.orders[e.order_id] = Order(seen_ts=ts)
        before = order.indicators()
        kind = type(e)
        if kind is OrderCreated:
            if order.created:
                return  # a second creation of one order (another event_id) changes nothing
            order.created, order.created_ts, order.day, order.amount = True, ts, self.clock.day(ts), fen(e.amount)
            order.agent = self._credited(cust, e, ts)
            out.append((order.agent, order.day, "orders", 1))
            out.append((order.agent, order.day, "order_amount_fen", order.amount))
            if order.agent is not None:
                for inq in cust.inquiries:
                    if inq.agent == order.agent and inq.first_reply <= ts < inq.end:
                        inq.orders.add(e.order_id)
                        if not inq.counted:  # an after-sales reception that sold: an inquiry after all
                            inq.counted = True
                            out.append((order.agent, inq.day, "inquiries", 1))
            if order.paid:  # payments read before the order (beyond the allowed lateness)
                out.append((order.agent, order.day, "paid_amount_fen", order.paid))
        elif kind is OrderPaid:
            order.paid += fen(e.amount)
            if order.paid_ts is None or ts < order.paid_ts:
                order.paid_ts = ts
            if order.created:
                out.append((order.agent, order.day, "paid_amount_fen", fen(e.amount)))
        elif kind is OrderRefunded:
            order.refunded += fen(e.amount)
            order.has_refund = True
        elif kind is OrderCancelled:
            order.cancelled = True
        elif kind is OrderFlagged:
            order.flagged = True
            if self.notes is not None and not before[2]:
                self.notes.append({"kind": "order_flagged", "ts": ts, "agent_id": order.agent, "customer_id": cid,
                                   "order_id": e.order_id, "reason": e.reason, "amount": order.amount / 100})
        after = order.indicators()
        for name, was, now in zip(_INDICATORS, before, after):
            if was != now:
                out.append((order.agent, order.day, name, 1 if now else -1))
        if after[0] and not before[0]:
            self._paid(e.order_id, order, cust, out)

    def _paid(self, order_id: str, order: Order, cust: Customer, out: list[Fact]) -> None:
        month = order.day[:7]
        whos = (None,) if order.agent is None else (None, order.agent)
        for who in whos:
            for period in (order.day, month):
                if (who, period) not in cust.paying:
                    cust.paying.add((who, period))
                    out.append((who, period, "paying_customers", 1))
        if order.agent is None:
            return
        for inq in cust.inquiries:
            if not inq.converted and order_id in inq.orders and order.paid_ts < inq.end:
                inq.converted = True
                out.append((inq.agent, inq.day, "converted_inquiries", 1))

    # -- time -----------------------------------------------------------------

    def _timer(self, cid: str, cust: Customer, due: int, kind: str, key: tuple) -> None:
        heapq.heappush(cust.timers, (due, kind, key))
        heapq.heappush(self.due, (due, cid))

    def shadow(self, cids) -> "CustomerLedger":
        """A ledger over copies of some customers, to look ahead without changing anything."""
        twin = copy.copy(self)
        customers = self.customers
        twin.customers = {cid: _copy_customer(customers[cid]) for cid in cids if cid in customers}
        twin.changed = twin.removed = twin.notes = twin.fresh = twin.unheld = None
        twin.reindex()
        return twin

    def reindex(self) -> None:
        """Rebuild the indexes from the customers (after loading them from elsewhere)."""
        self.held = [(item[0], cid) for cid, c in self.customers.items() for item in c.pending]
        self.due = [(t[0], cid) for cid, c in self.customers.items() for t in c.timers]
        heapq.heapify(self.held)
        heapq.heapify(self.due)

    def sweep(self, now: int, id_horizon: int) -> set[str]:
        """Once a day of event time: forget what no future event can need; return the
        customers it rewrote or forgot (the others are as they were).  The state is
        judged as of the day's start, whenever in the day the stream time crossed it
        (see `_expired`); ids as of `now`."""
        self.next_sweep = self.clock.midnight_after(now)
        return self._sweep(self.clock.day_start(now), now - id_horizon)

    def _wait_expired(self, cid: str, cust: Customer, key: tuple, due: int, out: list[Fact]) -> None:
        conv = cust.conversations.get(key[0])
        wait = conv.wait if conv else None
        # A wait not answered within `unanswered_after_s`: counted now, provisionally
        # to the conversation's last human replier; whoever answers later takes it over.
        if wait is not None and wait.opened == key[1] and wait.unanswered_who == _NOT_MARKED:
            wait.unanswered_who = conv.last_human
            out.append((conv.last_human, wait.day, "unanswered", 1))
            # For the rules the wait ends here (SPEC is silent; the README says why): a wait
            # noted open is noted closed, so `customer_waiting` resolves; a customer who
            # never gets an answer kept it firing for ever (and in the worker's memory).
            if wait.reported and self.notes is not None:
                self.notes.append({"kind": "wait", "ts": due, "agent_id": conv.last_human, "customer_id": cid,
                                   "conversation_id": key[0], "waited_s": (due - wait.start) / US,
                                   "open": False, "unanswered": True})

    def _still_waiting(self, cid: str, cust: Customer, key: tuple, due: int) -> None:
        conv_id, opened, check = key
        conv = cust.conversations.get(conv_id)
        wait = conv.wait if conv else None
        if wait is not None and wait.opened == opened and wait.unanswered_who == _NOT_MARKED:
            wait.reported = max(wait.reported, check)
            if self.notes is not None:
                self.notes.append({"kind": "wait", "ts": due,
                                   "agent_id": conv.last_human, "customer_id": cid, "conversation_id": conv_id,
                                   "waited_s": check, "open": True})

    def _inquiry_ended(self, cust: Customer, key: tuple, out: list[Fact]) -> None:
        agent, day = key
        keep = []
        for inq in cust.inquiries:
            if inq.agent == agent and inq.day == day:
                if inq.counted and not inq.orders:
                    out.append((agent, day, "lost_inquiries", 1))
            else:
                keep.append(inq)
        cust.inquiries = keep

    def _sweep(self, now: int, oldest_id: int) -> set[str]:
        """Forget what no future event can need, so memory follows open windows, not history."""
        yesterday = self.clock.day(now - 86400 * US)
        # Months before this one are closed (their end + grace has passed); a string
        # compare suffices: "2026-10-31" < "2026-11" <= "2026-11-05".
        open_month = self.clock.day(now - self.order_grace)[:7]
        gone, swept = [], []
        for cid, cust in self.customers.items():
            # Rebuild a container only when something in it has expired: most have not.
            rewrote = False
            if cust.orders and not all(self._order_needed(o, now, open_month) for o in cust.orders.values()):
                cust.orders = {k: o for k, o in cust.orders.items() if self._order_needed(o, now, open_month)}
                rewrote = True
            convs = cust.conversations
            if any(_forgotten(c, now) for c in convs.values()):
                cust.conversations = convs = {k: c for k, c in convs.items() if not _forgotten(c, now)}
                rewrote = True
            for conv in convs.values():
                if len(conv.first_reply_days) > 1 and any(d < yesterday for d in conv.first_reply_days):
                    conv.first_reply_days = {d for d in conv.first_reply_days if d >= yesterday}
                    rewrote = True
            if any(d < yesterday for d in cust.served):
                cust.served = {d: s for d, s in cust.served.items() if d >= yesterday}
                rewrote = True
            # distinct paying customers matter while the month can still change
            if any(p[1] < open_month for p in cust.paying):
                cust.paying = {p for p in cust.paying if p[1] >= open_month}
                rewrote = True
            ids = cust.recent_ids
            # ids arrive in about time order: the first one tells whether any expired
            if ids and next(iter(ids.values())) < oldest_id:
                cust.recent_ids = {k: t for k, t in ids.items() if t >= oldest_id}
                rewrote = True
            if not (cust.orders or convs or cust.inquiries or cust.served or cust.paying or cust.pending
                    or cust.timers or cust.recent_ids) and now - cust.last_reply_ts > self.lookback:
                gone.append(cid)
            elif rewrote:
                swept.append(cid)
        for cid in gone:
            del self.customers[cid]
        if self.changed is not None:
            # Only the customers it forgot must be written (deleted).  What it trimmed
            # from the others no later event can see (events and reads judge it again:
            # `_expired`, `_message`; served days, first replies and paying months before
            # the day's are never read again; an old id in memory says what the store
            # would), so their written state may keep it until an event changes them:
            # a restore reads it and the next sweep trims it again.  (bench/worker.py's
            # 20-day file through the worker's batch path in process: the sweeps trimmed
            # 135,576 customers, most of them changed by events too; customers written
            # 184,700 -> 153,000.)
            self.removed.update(gone)
        return {*swept, *gone}

    def order_credit(self, cust: Customer, order_id: str, ts: int) -> tuple[str, str | None] | None:
        """(month, agent) an event of this order stamped `ts` counts for: from the order as
        applied, or from its creation still held (without an `agent_id`, credited as the
        customer's replies stand now); None if the creation has not arrived or the order
        is forgotten by then."""
        o = cust.orders.get(order_id)
        if o is not None and o.created:
            return None if self._expired(o, ts) else (o.day[:7], o.agent)
        for created_ts, _, _, e in cust.pending:
            if type(e) is OrderCreated and e.order_id == order_id:
                return self.clock.day(created_ts)[:7], self._credited(cust, e, created_ts)
        return None

    def _expired(self, o: Order, ts: int) -> bool:
        """Whether the sweep of the day of `ts` forgets order `o`, whether it ran yet or not.

        The sweep forgets, as of each midnight of stream time, what no later event can
        need.  But it runs when the stream time crosses the midnight, and a partition's
        stream time can jump hours at once (an input read behind the others catching
        up, `source` in `Pipeline.feed_line`): events of those hours are applied before
        it.  So what it forgets is judged again when an event needs it, as of the start
        of that event's day, or the result would depend on when the sweep ran.  (Found
        by bench/worker.py --days 20: a payment 2 days 9 hours after its October order,
        after October's close, counted by the worker, not by replay, and its customer
        then "after-sales" for 21 days.)  The same holds for an idle conversation
        (`_message`) and an order never created (`_open_inquiry`)."""
        if o.created and ts - o.created_ts < self.order_grace:
            return False    # (its month cannot have closed: most order events)
        day_start = self.clock.day_start(ts)
        return not self._order_needed(o, day_start, self.clock.day(day_start - self.order_grace)[:7])

    def _order_needed(self, o: Order, now: int, open_month: str) -> bool:
        if not o.created:   # events of an order not yet created: wait a week for its creation
            return now - o.seen_ts <= _UNCREATED_ORDER_WAIT
        if o.day >= open_month:
            return True
        return o.paid_ts is not None and now - o.paid_ts <= self.after_sales

