"""Facts: what the per-customer and per-agent state machines derive from events.

A fact is a tuple `(who, period, field, delta)`: add `delta` to counter `field`
of `who` (an agent id, or None for the shop alone) in `period` (a day
`YYYY-MM-DD`, or a month `YYYY-MM`).  Facts are deltas, so a provisional count
can be taken back (an unanswered wait re-credited to the agent who finally
answered) and they can be summed in any order, in one process or after a
repartition by agent.

A day fact also counts for its month, and an agent's fact also counts for the
shop, except for the distinct counts listed below, whose shop and month values
are not sums and come as facts of their own.
"""

from __future__ import annotations
# A plain tuple rather than a NamedTuple: a million events make about three
# million facts, and building a tuple is the cheapest thing Python does.
Fact = tuple  # (who: str | None, period: str, field: str, delta: int)


# Distinct customers: the shop's count is not the sum of its agents'.
NOT_ROLLED_UP_TO_SHOP = frozenset({"served_customers", "paying_customers"})
# Distinct customers over a month are not the sum over its days.
NOT_ROLLED_UP_TO_MONTH = frozenset({"paying_customers"})

# Counter fields (all integers: times in µs, money in fen, scores in thousandths).
COUNTERS = (
    "responses", "response_time_us", "first_responses", "first_response_time_us",
    "slow_responses", "responses_within_3min", "unanswered", "served_customers",
    "inquiries", "converted_inquiries", "lost_inquiries",
    "orders", "order_amount_fen", "paid_orders", "paid_amount_fen", "paying_customers",
    "refunded_orders", "abnormal_orders", "valid_orders",
    "complaints", "ratings", "rating_sum", "qa_checks", "qa_milli",
    "reports_submitted", "reports_on_time", "reports_audited", "reports_truthful", "report_quality_milli",
)
