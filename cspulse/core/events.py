"""The events of SPEC §2: their shapes, and the rules that reject a bad one.

Decoding and validation are one step (msgspec decodes JSON straight into typed,
constrained structs, about 1 µs an event).  `decode` never raises: it returns
either an event or a `Rejected` whose reason names the field and the rule it
breaks (`amount: must be >= 0`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, Union

import msgspec

from .kpi_names import KPI_NAMES

EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
# An event time must carry its UTC offset: without one it could be any of 24 instants.
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
Amount = Annotated[float, msgspec.Meta(ge=0)]
Score100 = Annotated[float, msgspec.Meta(ge=0, le=100)]
Stars = Annotated[int, msgspec.Meta(ge=1, le=5)]
Period = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
Id = Annotated[str, msgspec.Meta(min_length=1)]


class Event(msgspec.Struct, tag_field="type", frozen=True, kw_only=True, gc=False):
    """Common fields of every event; unknown fields are ignored."""

    event_id: EventId
    ts: Timestamp
    shop_id: str = "default"


class Message(Event, tag="message"):
    conversation_id: Id
    customer_id: Id
    sender: Literal["customer", "agent", "bot"]
    agent_id: str | None = None
    auto_reply: bool = False


class OrderCreated(Event, tag="order_created"):
    order_id: Id
    customer_id: Id
    amount: Amount
    agent_id: str | None = None


class OrderPaid(Event, tag="order_paid"):
    order_id: Id
    customer_id: Id
    amount: Amount


class OrderCancelled(Event, tag="order_cancelled"):
    order_id: Id
    customer_id: Id


class OrderRefunded(Event, tag="order_refunded"):
    order_id: Id
    customer_id: Id
    amount: Amount
    merchant_fault: bool | None = None


class OrderFlagged(Event, tag="order_flagged"):
    order_id: Id
    customer_id: Id
    reason: str


class Complaint(Event, tag="complaint"):
    customer_id: Id
    agent_id: str | None = None
    conversation_id: str | None = None
    category: str | None = None


class Rating(Event, tag="rating"):
    customer_id: Id
    agent_id: Id
    score: Stars


class QaCheck(Event, tag="qa_check"):
    agent_id: Id
    reviewer: Id
    score: Score100
    conversation_id: str | None = None


class ReportSubmitted(Event, tag="report_submitted"):
    agent_id: Id
    report_id: Id
    due: Timestamp


class ReportAudited(Event, tag="report_audited"):
    agent_id: Id
    report_id: Id
    truthful: bool
    quality: Score100


class SelfReview(Event, tag="self_review"):
    agent_id: Id
    period: Period
    score: Score100
    note: str | None = None


class ManagerReview(Event, tag="manager_review"):
    agent_id: Id
    period: Period
    reviewer: Id
    score: Score100
    note: str | None = None


class GoalSet(Event, tag="goal_set"):
    agent_id: Id
    period: Period
    kpi: str
    target: float
    reviewer: Id


class ImprovementPlanSubmitted(Event, tag="improvement_plan_submitted"):
    agent_id: Id
    period: Period
    text: Id


AnyEvent = Union[
    Message, OrderCreated, OrderPaid, OrderCancelled, OrderRefunded, OrderFlagged,
    Complaint, Rating, QaCheck, ReportSubmitted, ReportAudited, SelfReview,
    ManagerReview, GoalSet, ImprovementPlanSubmitted,
]
EVENT_TYPES: dict[str, type[Event]] = {cls.__struct_config__.tag: cls for cls in AnyEvent.__args__}

# Where each type travels on Kafka (SPEC §2), and what it is keyed by there.
TOPIC_OF = {
    "message": "cs.chat",
    **{t: "cs.orders" for t in ("order_created", "order_paid", "order_cancelled", "order_refunded", "order_flagged")},
    **{t: "cs.feedback" for t in ("complaint", "rating", "qa_check")},
    **{t: "cs.reviews" for t in ("report_submitted", "report_audited", "self_review", "manager_review",
                                 "goal_set", "improvement_plan_submitted")},
}


class Rejected(msgspec.Struct, frozen=True):
    """An input that broke a rule of SPEC §2; `reason` is `field: rule`."""

    reason: str
    event_id: str | None = None

    @property
    def kind(self) -> str:
        """The reason without the offending value, for counting rejections by reason."""
        return _VALUE.sub("…", self.reason)


_decoder = msgspec.json.Decoder(AnyEvent)
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_VALUE = re.compile(r"'[^']*'|\(byte \d+\)")
_REWRITES = [
    (re.compile(r"^Expected `(?:float|int)` >= (\S+?)(?:\.0)?$"), r"must be >= \1"),
    (re.compile(r"^Expected `(?:float|int)` <= (\S+?)(?:\.0)?$"), r"must be <= \1"),
    (re.compile(r"^Expected `datetime` with a timezone component$"), "must carry a UTC offset (…+08:00 or …Z)"),
    (re.compile(r"^Expected `str` of length >= 1$"), "must not be empty"),
    (re.compile(r"^Expected `str` of length <= (\d+)$"), r"must be at most \1 characters"),
    (re.compile(r"^Expected `str` matching regex .*$"), "must be YYYY-MM"),
    (re.compile(r"^Expected `(\w+)`, got `(\w+)`$"), r"must be \1, not \2"),
    (re.compile(r"^Expected `(\w+) \| null`, got `(\w+)`$"), r"must be \1, not \2"),
    (re.compile(r"^Invalid enum value (.*)$"), r"invalid value \1"),
    (re.compile(r"^Invalid RFC3339 encoded datetime$"), "must be an ISO-8601 time with a UTC offset"),
]


def _reason(error: Exception) -> str:
    text = str(error)
    if isinstance(error, msgspec.DecodeError) and not isinstance(error, msgspec.ValidationError):
        return f"json: {text}"
    m = _AT.match(text)
    msg, path = m.group("msg"), (m.group("path") or "").lstrip(".")
    missing = re.match(r"^Object missing required field `(\w+)`$", msg)
    if missing:
        field = missing.group(1)
        return f"{path + '.' if path else ''}{field}: required"
    if path == "type" and msg.startswith("Invalid value"):
        return f"type: unknown event type {msg.removeprefix('Invalid value ')}"
    for pattern, repl in _REWRITES:
        if pattern.match(msg):
            msg = pattern.sub(repl, msg)
            break
    return f"{path or 'event'}: {msg}"


def _check(event: Event) -> str | None:
    """Rules that span fields, which a struct type cannot state."""
    kind = type(event)
    if kind is Message:
        if event.sender == "agent" and not event.agent_id:
            return "agent_id: required when sender is agent"
    elif kind is GoalSet and event.kpi not in KPI_NAMES:
        return f"kpi: unknown KPI '{event.kpi}'"
    return None


def decode(line: bytes | str) -> Event | Rejected:
    """Parse and validate one JSON event; never raises."""
    try:
        event = _decoder.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        return Rejected(_reason(error), _event_id_of(line))
    problem = _check(event)
    if problem:
        return Rejected(problem, event.event_id)
    return event


def _event_id_of(line: bytes | str) -> str | None:
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None
    value = obj.get("event_id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def encode(event: Event) -> bytes:
    """The event as the JSON line `decode` reads back."""
    return msgspec.json.encode(event)
