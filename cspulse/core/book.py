"""The KPI book: counters per (agent or shop, period), and the KPIs read out of them.

Facts go in (any order: they are sums); `kpis()` turns counters into the KPI
values of SPEC §3, with `None` wherever a ratio or mean has no data.
"""

from __future__ import annotations

from collections import defaultdict

from .facts import NOT_ROLLED_UP_TO_MONTH, NOT_ROLLED_UP_TO_SHOP
from .kpi_names import KPIS
from .params import US

SHOP = None


class KpiBook:
    """Counters per (who, period); who is an agent id or SHOP (None).

    `add` only counts a fact where it was stated (one dict update on the hot
    path); the roll-ups to month and shop are made when the book is read.
    """

    def __init__(self) -> None:
        self.stated: dict[tuple[str | None, str], defaultdict[str, int]] = {}
        self._rolled: dict[tuple[str | None, str], dict[str, int]] | None = None
        self.changed: set[tuple[str | None, str]] | None = None   # buckets touched, when tracked

    def __getstate__(self):
        return {"stated": self.stated, "_rolled": None, "changed": None}

    def add_all(self, facts) -> None:
        """Count facts where they were stated (see facts.py for how they roll up)."""
        stated, changed = self.stated, self.changed
        for who, period, name, delta in facts:
            b = stated.get((who, period))
            if b is None:
                b = stated[(who, period)] = defaultdict(int)
            b[name] += delta
            if changed is not None:
                changed.add((who, period))
        self._rolled = None

    def take_back(self, facts) -> None:
        """Undo `add_all(facts)`; a counter back at zero goes, and then an empty bucket."""
        stated = self.stated
        for who, period, name, delta in facts:
            b = stated.setdefault((who, period), defaultdict(int))
            left = b.get(name, 0) - delta
            if left:
                b[name] = left
            else:
                b.pop(name, None)
                if not b:
                    del stated[(who, period)]
        self._rolled = None

    def copy(self, month: str | None = None) -> "KpiBook":
        """A copy to change freely; with `month` ("YYYY-MM"), only that month's buckets."""
        twin = KpiBook()
        twin.stated = {k: defaultdict(int, v) for k, v in self.stated.items()
                       if month is None or k[1].startswith(month)}
        return twin

    def add_buckets(self, buckets) -> None:
        """Add stated counters, {(who, period): {name: value}} (books of other partitions)."""
        self.add_all((who, period, name, value) for (who, period), bucket in buckets.items()
                     for name, value in bucket.items())

    def windows(self, day: str) -> dict[tuple[str | None, str], dict]:
        """The KPIs of `day` ("today") and of its month to date ("month"), for the shop
        (None) and for every agent with data in that month."""
        month = day[:7]
        out = {}
        for who in [w for (w, p) in self.counters if p == month]:
            out[(who, "today")] = self.kpis(who, day)
            out[(who, "month")] = self.kpis(who, month)
        return out

    @property
    def counters(self) -> dict[tuple[str | None, str], dict[str, int]]:
        """Every (who, period) with its counters, rolled up to months and the shop."""
        if self._rolled is None:
            rolled: dict[tuple[str | None, str], dict[str, int]] = {}

            def into(key, name, delta):
                b = rolled.get(key)
                if b is None:
                    b = rolled[key] = defaultdict(int)
                b[name] += delta

            for (who, period), bucket in self.stated.items():
                is_day = len(period) == 10
                for name, delta in bucket.items():
                    to_month = is_day and name not in NOT_ROLLED_UP_TO_MONTH
                    to_shop = who is not None and name not in NOT_ROLLED_UP_TO_SHOP
                    into((who, period), name, delta)
                    if to_month:
                        into((who, period[:7]), name, delta)
                    if to_shop:
                        into((SHOP, period), name, delta)
                        if to_month:
                            into((SHOP, period[:7]), name, delta)
            self._rolled = rolled
        return self._rolled

    def agents(self, period: str) -> list[str]:
        """Agents with any counter in `period`, sorted."""
        return sorted(w for (w, p) in self.counters if p == period and w is not None)

    def kpis(self, who: str | None, period: str) -> dict[str, float | int | None]:
        """Every KPI of SPEC §3 for `who` in `period`."""
        return kpis_from_counts(self.counters.get((who, period), {}))

    def agent_kpis(self, who: str, period: str) -> dict[str, float | int | None]:
        """`kpis(who, period)` for an agent, from its own buckets only: cheap while facts
        keep coming (no roll-up of the whole book)."""
        if len(period) == 10:
            return kpis_from_counts(self.stated.get((who, period), {}))
        total: defaultdict[str, int] = defaultdict(int)
        for (w, p), bucket in self.stated.items():
            if w == who and p.startswith(period):
                whole_month = len(p) == 7
                for name, value in bucket.items():
                    if whole_month or name not in NOT_ROLLED_UP_TO_MONTH:
                        total[name] += value
        return kpis_from_counts(total)

    def all_kpis(self) -> dict[tuple[str | None, str], dict[str, float | int | None]]:
        """Every KPI of every (agent or shop, period) with counters: what the store keeps."""
        return {key: self.kpis(*key) for key in self.counters}


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _mean(total: float, n: int, scale: float = 1, digits: int | None = None) -> float | None:
    if not n:
        return None
    value = total / n / scale
    return round(value, digits) if digits is not None else value


def kpis_from_counts(c) -> dict[str, float | int | None]:
    """KPI values from one bucket of counters (SPEC §3 formulas, in one place)."""
    n = lambda k: c.get(k, 0)  # noqa: E731
    responses, served, inquiries = n("responses"), n("served_customers"), n("inquiries")
    orders, paid_orders, paying = n("orders"), n("paid_orders"), n("paying_customers")
    out = {
        "responses": responses,
        # times are shown to the millisecond, money to the fen
        "avg_response_time_s": _mean(n("response_time_us"), responses, US, 3),
        "first_response_time_s": _mean(n("first_response_time_us"), n("first_responses"), US, 3),
        "slow_responses": n("slow_responses"),
        "response_within_3min_rate": _ratio(n("responses_within_3min"), responses),
        "unanswered": n("unanswered"),
        "served_customers": served,
        "inquiries": inquiries,
        "converted_inquiries": n("converted_inquiries"),
        "lost_inquiries": n("lost_inquiries"),
        "inquiry_conversion_rate": _ratio(n("converted_inquiries"), inquiries),
        "churn_rate": _ratio(n("lost_inquiries"), inquiries),
        "orders": orders,
        "order_amount": n("order_amount_fen") / 100,
        "paid_orders": paid_orders,
        "payment_ratio": _ratio(paid_orders, orders),
        "paid_amount": n("paid_amount_fen") / 100,
        "paying_customers": paying,
        "avg_order_value": _mean(n("paid_amount_fen"), paying, 100, 2),
        "refunded_orders": n("refunded_orders"),
        "refund_ratio": _ratio(n("refunded_orders"), paid_orders),
        "abnormal_orders": n("abnormal_orders"),
        "abnormal_order_ratio": _ratio(n("abnormal_orders"), orders),
        "valid_orders": n("valid_orders"),
        "valid_order_ratio": _ratio(n("valid_orders"), orders),
        "complaints": n("complaints"),
        "complaint_ratio": _ratio(n("complaints"), served),
        "csat": _mean(n("rating_sum"), n("ratings")),
        "qa_score": _mean(n("qa_milli"), n("qa_checks"), 1000),
        "report_timeliness": _ratio(n("reports_on_time"), n("reports_submitted")),
        "report_truthfulness": _ratio(n("reports_truthful"), n("reports_audited")),
        "report_quality": _mean(n("report_quality_milli"), n("reports_audited"), 1000),
    }
    assert out.keys() == KPIS.keys()
    return out


def goal_progress(kpi: str, value: float | int | None, target: float) -> dict:
    """How far `value` is toward `target`: `met` and `progress` (1.0 = met exactly).

    For a KPI where lower is better (response time, churn, refunds, complaints…)
    progress is target / value, so halving the distance still reads as progress.
    """
    if value is None:
        return {"target": target, "value": None, "progress": None, "met": None}
    better = KPIS[kpi][1]
    if better == "up":
        met = value >= target
        progress = value / target if target else (1.0 if met else 0.0)
    else:
        met = value <= target
        progress = target / value if value else 1.0
    return {"target": target, "value": value, "progress": round(progress, 4), "met": met}
