import json

import pytest

from cspulse.core import Pipeline, decode
from cspulse.core.events import Rejected

GOOD = {"event_id": "x1", "type": "order_created", "ts": "2026-11-03T10:00:00+08:00", "order_id": "o1",
        "customer_id": "c1", "amount": 10}


def with_(**changes):
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


CASES = [
    ("{not json", "json: "),
    ("[1, 2]", "event: must be object, not array"),
    (with_(event_id=...), "event_id: required"),
    (with_(event_id=""), "event_id: must not be empty"),
    (with_(event_id="x" * 129), "event_id: must be at most 128 characters"),
    (with_(event_id=7), "event_id: must be str, not int"),
    (with_(type=...), "type: required"),
    (with_(type="order_teleported"), "type: unknown event type 'order_teleported'"),
    (with_(ts=...), "ts: required"),
    (with_(ts="2026-11-03T10:00:00"), "ts: must carry a UTC offset"),
    (with_(ts="yesterday"), "ts: must be an ISO-8601 time with a UTC offset"),
    (with_(ts=1730000000), "ts: must be datetime, not int"),
    (with_(amount=-0.01), "amount: must be >= 0"),
    (with_(amount="10"), "amount: must be float, not str"),
    (with_(order_id=...), "order_id: required"),
    (json.dumps({"event_id": "m", "type": "message", "ts": "2026-11-03T10:00:00+08:00", "conversation_id": "v",
                 "customer_id": "c", "sender": "agent"}), "agent_id: required when sender is agent"),
    (json.dumps({"event_id": "m", "type": "message", "ts": "2026-11-03T10:00:00+08:00", "conversation_id": "v",
                 "customer_id": "c", "sender": "dog"}), "sender: invalid value 'dog'"),
    (json.dumps({"event_id": "m", "type": "message", "ts": "2026-11-03T10:00:00+08:00", "conversation_id": "v",
                 "customer_id": "c", "sender": "agent", "agent_id": "a", "auto_reply": "yes"}),
     "auto_reply: must be bool, not str"),
    (json.dumps({"event_id": "r", "type": "rating", "ts": "2026-11-03T10:00:00+08:00", "customer_id": "c",
                 "agent_id": "a", "score": 6}), "score: must be <= 5"),
    (json.dumps({"event_id": "r", "type": "rating", "ts": "2026-11-03T10:00:00+08:00", "customer_id": "c",
                 "agent_id": "a", "score": 4.5}), "score: must be int, not float"),
    (json.dumps({"event_id": "q", "type": "qa_check", "ts": "2026-11-03T10:00:00+08:00", "agent_id": "a",
                 "reviewer": "m", "score": 101}), "score: must be <= 100"),
    (json.dumps({"event_id": "s", "type": "self_review", "ts": "2026-11-03T10:00:00+08:00", "agent_id": "a",
                 "period": "2026-13", "score": 50}), "period: must be YYYY-MM"),
    (json.dumps({"event_id": "g", "type": "goal_set", "ts": "2026-11-03T10:00:00+08:00", "agent_id": "a",
                 "period": "2026-11", "kpi": "happiness", "target": 1, "reviewer": "m"}),
     "kpi: unknown KPI 'happiness'"),
    (json.dumps({"event_id": "d", "type": "report_submitted", "ts": "2026-11-03T10:00:00+08:00", "agent_id": "a",
                 "report_id": "r", "due": "2026-11-03T18:00:00"}), "due: must carry a UTC offset"),
]


@pytest.mark.parametrize("line,reason", CASES, ids=[r for _, r in CASES])
def test_bad_event_is_rejected_with_its_reason_and_changes_nothing(line, reason):
    result = decode(line)
    assert isinstance(result, Rejected)
    assert result.reason.startswith(reason), result.reason
    p = Pipeline()
    p.run([line])
    assert p.stats.rejected_total == 1 and p.stats.applied == 0
    assert p.book.counters == {}


def test_processing_goes_on_after_a_rejection():
    p = Pipeline().run([with_(amount=-1), "garbage", with_(event_id="x2")])
    assert p.stats.read == 3
    assert p.stats.applied == 1
    assert p.stats.types == {"order_created": 1}
    assert p.stats.rejected == {"amount: must be >= 0": 1, "json: JSON is malformed: invalid character …": 1}
    assert p.book.kpis(None, "2026-11-03")["orders"] == 1


def test_unknown_fields_are_ignored_and_shop_id_defaults():
    e = decode(with_(colour="blue"))
    assert not isinstance(e, Rejected)
    assert e.shop_id == "default"
