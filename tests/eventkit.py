import itertools
import json
import random
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


def chatty_stream(seed: int, pace: int = 1) -> list[str]:
    """Customers writing every few seconds, answered late or never (waits time out, held
    events pile up), with orders and a few lines out of order within the lateness."""
    rnd = random.Random(seed)
    out, t = [], 9 * 3600
    hms = lambda s: f"2026-11-03T{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"  # noqa: E731
    for i in range(400):
        t += pace * rnd.choice([1, 2, 3, 5])
        c = f"c{rnd.randrange(6)}"
        if rnd.random() < 0.12:
            out.append(agent(hms(t), a=f"a{rnd.randrange(2)}", c=c))
        elif rnd.random() < 0.05:
            out.append(ev("order_created", hms(t), order_id=f"o{i}", customer_id=c, amount=12))
        else:
            out.append(cust(hms(t), c=c))
    for _ in range(15):      # arrivals a little out of order
        i = rnd.randrange(len(out) - 3)
        out[i], out[i + 2] = out[i + 2], out[i]
    for i in (330, 360, 390):   # and a few far behind: late (older than the allowed 600 s)
        out.insert(i, cust(hms(9 * 3600 + 20 * pace), c=f"c{rnd.randrange(6)}"))
    return out
