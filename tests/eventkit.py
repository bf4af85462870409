import itertools
import json
from datetime import datetime

from cspulse.core.shopclock import to_us

from cspulse.core import Params, Pipeline

_ids = itertools.count(1)


def ev(type_, ts, **fields):
    """One event as a JSON line; `ts` without a zone is taken as Shanghai time (+08:00)."""
    if "+" not in ts and not ts.endswith("Z"):
        ts += "+08:00"
    fields.setdefault("event_id", f"e{next(_ids)}")
    return json.dumps({"type": type_, "ts": ts, **fields})


def cust(ts, c="c1", conv=None, **kw):
    return ev("message", ts, conversation_id=conv or f"v-{c}", customer_id=c, sender="customer", **kw)


def agent(ts, a="a1", c="c1", conv=None, auto=False, **kw):
    return ev("message", ts, conversation_id=conv or f"v-{c}", customer_id=c, sender="agent", agent_id=a,
              auto_reply=auto, **kw)


def bot(ts, c="c1", conv=None):
    return ev("message", ts, conversation_id=conv or f"v-{c}", customer_id=c, sender="bot")


def at(ts):
    """A Shanghai local time as the core's µs."""
    return to_us(datetime.fromisoformat(ts if "+" in ts or ts.endswith("Z") else ts + "+08:00"))


def run(*lines, until=None, params=None):
    """Replay `lines` through a fresh pipeline, evaluating time as of `until` (local time)."""
    return Pipeline(params or Params()).run(lines, until=at(until) if until else None)


def kpis(p, who, period):
    return p.book.kpis(who, period)
