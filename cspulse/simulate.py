"""A realistic shop's event stream, deterministic for a seed.

Agents differ in skill (how fast they answer, how well they sell, how often
customers complain); traffic follows the shop's day (quiet at night, peaks late
morning and evening); customers come back after buying (after-sales), orders
get paid, cancelled, refunded in part or in full, or flagged; supervisors
spot-check conversations, agents hand in weekly reports, and each month has
goals and reviews.  About 1,650 events per agent per day with the defaults, so
20 agents × 30 days is about a million events.

Events come out in event-time order (or nearly so with `disorder_s`), one JSON
object per line, through a bounded heap: memory does not grow with the length
of the simulation.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterator
from zoneinfo import ZoneInfo

import msgspec

# Relative traffic by local hour: quiet at night, peaks 10-12, 14-16 and 20-22.
HOURLY = [2, 1, 1, 1, 1, 1, 2, 4, 8, 12, 15, 15, 10, 11, 14, 14, 12, 10, 10, 12, 15, 15, 10, 5]


@dataclass(frozen=True)
class AgentProfile:
    agent_id: str
    median_response_s: float   # typical first-reply delay
    conversion: float          # chance that a conversation ends in an order
    complaint_rate: float
    punctuality: float         # chance a weekly report is on time
    quality: float             # 0..1, drives QA scores, ratings, reviews


def profiles(n: int, rnd: random.Random) -> list[AgentProfile]:
    out = []
    for i in range(n):
        skill = rnd.betavariate(3, 2)   # most agents decent, a few weak
        out.append(AgentProfile(
            agent_id=f"agent-{i + 1:02d}",
            median_response_s=round(90 - 70 * skill + rnd.uniform(-5, 5), 1),
            conversion=round(0.22 + 0.35 * skill, 3),
            complaint_rate=round(0.03 - 0.025 * skill, 4),
            punctuality=round(0.6 + 0.38 * skill, 3),
            quality=skill,
        ))
    return out


class Simulator:
    """Generates the events of `days` days of a shop with `agents` agents."""

    def __init__(self, agents: int = 20, days: int = 30, seed: int = 1, start: date = date(2026, 11, 1),
                 conversations_per_agent_day: int = 265, customers_per_agent: int | None = None,
                 timezone: str = "Asia/Shanghai",
                 disorder_s: float = 0.0, duplicate_rate: float = 0.0, bad_rate: float = 0.0) -> None:
        if agents < 1 or days < 1 or conversations_per_agent_day < 1:
            raise ValueError("agents, days and traffic must be at least 1")
        self.rnd = random.Random(seed)
        self.seed, self.days, self.start = seed, days, start
        self.zone = ZoneInfo(timezone)
        self.traffic = conversations_per_agent_day
        self.agents = profiles(agents, self.rnd)
        self.disorder_s, self.duplicate_rate, self.bad_rate = disorder_s, duplicate_rate, bad_rate
        # Customers the shop knows: by default each comes back about every four days.
        self.pool = agents * (customers_per_agent or conversations_per_agent_day * 4)
        self.recent_buyers: list[str] = []
        self._n = 0
        self._heap: list[tuple[float, int, dict]] = []
        self._encoder = msgspec.json.Encoder()

    # -- output ---------------------------------------------------------------

    def lines(self) -> Iterator[bytes]:
        """Every event as a JSON line (no newline), in (nearly) event-time order."""
        for d in range(self.days):
            day = self.start + timedelta(days=d)
            self._simulate_day(day)
            yield from self._emit_before(self._local(day + timedelta(days=1), 0))
        yield from self._emit_before(math.inf)

    def _emit_before(self, limit: float) -> Iterator[bytes]:
        heap, rnd = self._heap, self.rnd
        while heap and heap[0][0] < limit:
            _, _, event = heapq.heappop(heap)
            line = self._encoder.encode(event)
            if self.bad_rate and rnd.random() < self.bad_rate:
                yield self._spoil(event)
                continue
            yield line
            if self.duplicate_rate and rnd.random() < self.duplicate_rate:
                yield line   # at-least-once delivery

    def _spoil(self, event: dict) -> bytes:
        broken = dict(event)
        how = self.rnd.randrange(4)
        if how == 0:
            return self._encoder.encode(event)[:-7]                       # truncated JSON
        if how == 1:
            broken["ts"] = broken["ts"][:19]                               # no UTC offset
        elif how == 2:
            broken["type"] = "order_teleported"                            # unknown type
        else:
            broken.pop("event_id")                                         # missing id
        return self._encoder.encode(broken)

    def _push(self, ts: float, type_: str, **fields) -> None:
        self._n += 1
        shown = ts + (self.rnd.uniform(0, self.disorder_s) if self.disorder_s else 0)
        event = {"event_id": f"s{self.seed}-{self._n}", "type": type_, "ts": self._iso(ts), **fields}
        heapq.heappush(self._heap, (shown, self._n, event))

    def _iso(self, ts: float) -> str:
        return datetime.fromtimestamp(round(ts), self.zone).isoformat()

    def _local(self, day: date, seconds: float) -> float:
        return datetime(day.year, day.month, day.day, tzinfo=self.zone).timestamp() + seconds

    # -- the shop's day ---------------------------------------------------------

    def _simulate_day(self, day: date) -> None:
        rnd = self.rnd
        if day.day == 1 or day == self.start:
            self._month_start(day)
        for agent in self.agents:
            n = max(1, round(rnd.gauss(self.traffic, self.traffic * 0.1)))
            for _ in range(n):
                hour = rnd.choices(range(24), weights=HOURLY)[0]
                self._conversation(agent, self._local(day, hour * 3600 + rnd.uniform(0, 3600)))
            for _ in range(2):   # spot checks
                self._push(self._local(day, rnd.uniform(17, 19) * 3600), "qa_check", agent_id=agent.agent_id,
                           reviewer="supervisor-1", score=round(min(100, max(0, rnd.gauss(60 + 35 * agent.quality, 8))), 1))
            if day.weekday() == 0:
                self._weekly_report(agent, day)
        if (day + timedelta(days=1)).day == 1 or day == self.start + timedelta(days=self.days - 1):
            self._month_end(day)

    def _conversation(self, agent: AgentProfile, t0: float) -> None:
        rnd = self.rnd
        if self.recent_buyers and rnd.random() < 0.15:
            customer = rnd.choice(self.recent_buyers)    # back after buying: after-sales
        else:
            customer = f"cust-{rnd.randrange(self.pool)}"
        conv = f"conv-{self._n + 1}"
        msg = dict(conversation_id=conv, customer_id=customer)
        a = agent.agent_id
        self._push(t0, "message", sender="customer", **msg)
        if rnd.random() < 0.5:
            self._push(t0 + 1, "message", sender="bot", **msg)
        if rnd.random() < 0.3:
            self._push(t0 + 2, "message", sender="agent", agent_id=a, auto_reply=True, **msg)
        t = self._opening(t0)
        last_reply = t0
        for turn in range(rnd.choice((1, 1, 2, 2, 3, 4))):
            if turn:
                t += rnd.uniform(15, 150)
                self._push(t, "message", sender="customer", **msg)
            if rnd.random() < 0.004:
                rt = rnd.uniform(3600, 7200)               # forgotten: unanswered for an hour
            else:
                rt = rnd.lognormvariate(math.log(agent.median_response_s), 0.6)
            t += rt
            last_reply = t
            self._push(t, "message", sender="agent", agent_id=a, **msg)
        if rnd.random() < agent.complaint_rate:
            self._push(last_reply + rnd.uniform(60, 3600), "complaint", customer_id=customer,
                       conversation_id=conv, **({"agent_id": a} if rnd.random() < 0.5 else {}),
                       category=rnd.choice(["attitude", "slow", "wrong info"]))
        if rnd.random() < 0.25:
            stars = min(5, max(1, round(rnd.gauss(2.5 + 2.3 * agent.quality, 0.8))))
            self._push(last_reply + rnd.uniform(30, 600), "rating", customer_id=customer, agent_id=a, score=stars)
        if rnd.random() < agent.conversion:
            self._order(agent, customer, last_reply)

    def _opening(self, t: float) -> float:
        local = datetime.fromtimestamp(t, self.zone)
        if local.hour < 8:
            return local.replace(hour=8, minute=0, second=0, microsecond=0).timestamp() + self.rnd.uniform(0, 600)
        return t

    def _order(self, agent: AgentProfile, customer: str, after: float) -> None:
        rnd = self.rnd
        order = f"ord-{self._n + 1}"
        o = dict(order_id=order, customer_id=customer)
        created = after + (rnd.uniform(120, 1800) if rnd.random() < 0.9 else rnd.uniform(3600, 30 * 3600))
        amount = round(rnd.lognormvariate(math.log(150), 0.7), 2)
        explicit = {"agent_id": agent.agent_id} if rnd.random() < 0.1 else {}
        self._push(created, "order_created", amount=amount, **explicit, **o)
        if rnd.random() < 0.88:
            paid = created + (rnd.uniform(30, 1200) if rnd.random() < 0.95 else rnd.uniform(86400, 3 * 86400))
            self._push(paid, "order_paid", amount=amount, **o)
            self.recent_buyers.append(customer)
            if len(self.recent_buyers) > self.pool // 10:
                del self.recent_buyers[: len(self.recent_buyers) // 2]
            if rnd.random() < 0.06:
                refund = amount if rnd.random() < 0.5 else round(amount * rnd.uniform(0.1, 0.6), 2)
                self._push(paid + rnd.uniform(3600, 5 * 86400), "order_refunded", amount=refund,
                           merchant_fault=rnd.random() < 0.3, **o)
            elif rnd.random() < 0.02:
                self._push(paid + rnd.uniform(600, 86400), "order_cancelled", **o)
        elif rnd.random() < 0.3:
            self._push(created + rnd.uniform(600, 7200), "order_cancelled", **o)
        if rnd.random() < 0.02:
            self._push(created + rnd.uniform(60, 3600), "order_flagged", reason=rnd.choice(
                ["address mismatch", "bulk buyer", "payment risk"]), **o)

    def _weekly_report(self, agent: AgentProfile, day: date) -> None:
        rnd = self.rnd
        due = self._local(day, 18 * 3600)
        submitted = due - rnd.uniform(60, 7200) if rnd.random() < agent.punctuality else due + rnd.uniform(60, 86400)
        report = f"rep-{agent.agent_id}-{day.isoformat()}"
        self._push(submitted, "report_submitted", agent_id=agent.agent_id, report_id=report, due=self._iso(due))
        self._push(submitted + rnd.uniform(3600, 86400), "report_audited", agent_id=agent.agent_id,
                   report_id=report, truthful=rnd.random() < 0.8 + 0.2 * agent.quality,
                   quality=round(min(100, max(0, rnd.gauss(55 + 40 * agent.quality, 7))), 1))

    def _month_start(self, day: date) -> None:
        period = day.strftime("%Y-%m")
        t = self._local(day, 9 * 3600)
        for agent in self.agents:
            self._push(t, "goal_set", agent_id=agent.agent_id, period=period, kpi="inquiry_conversion_rate",
                       target=0.45, reviewer="manager-1")
            self._push(t, "goal_set", agent_id=agent.agent_id, period=period, kpi="avg_response_time_s",
                       target=45, reviewer="manager-1")

    def _month_end(self, day: date) -> None:
        rnd = self.rnd
        period = day.strftime("%Y-%m")
        t = self._local(day, 20 * 3600)
        for agent in self.agents:
            self._push(t + rnd.uniform(0, 3600), "self_review", agent_id=agent.agent_id, period=period,
                       score=round(min(100, rnd.gauss(75 + 15 * agent.quality, 5)), 1))
            self._push(t + rnd.uniform(3600, 7200), "manager_review", agent_id=agent.agent_id, period=period,
                       reviewer="manager-1", score=round(min(100, rnd.gauss(55 + 40 * agent.quality, 6)), 1))
