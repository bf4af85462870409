"""The KPI names of SPEC §3, the one list every layer (JSON, store, metrics) uses."""

# name -> (kind, better): kind drives formatting and metric units; better says which
# way a goal is met ("up": value >= target, "down": value <= target).
KPIS: dict[str, tuple[str, str]] = {
    "responses": ("count", "up"),
    "avg_response_time_s": ("seconds", "down"),
    "first_response_time_s": ("seconds", "down"),
    "slow_responses": ("count", "down"),
    "response_within_3min_rate": ("ratio", "up"),
    "unanswered": ("count", "down"),
    "served_customers": ("count", "up"),
    "inquiries": ("count", "up"),
    "converted_inquiries": ("count", "up"),
    "lost_inquiries": ("count", "down"),
    "inquiry_conversion_rate": ("ratio", "up"),
    "churn_rate": ("ratio", "down"),
    "orders": ("count", "up"),
    "order_amount": ("amount", "up"),
    "paid_orders": ("count", "up"),
    "payment_ratio": ("ratio", "up"),
    "paid_amount": ("amount", "up"),
    "paying_customers": ("count", "up"),
    "avg_order_value": ("amount", "up"),
    "refunded_orders": ("count", "down"),
    "refund_ratio": ("ratio", "down"),
    "abnormal_orders": ("count", "down"),
    "abnormal_order_ratio": ("ratio", "down"),
    "valid_orders": ("count", "up"),
    "valid_order_ratio": ("ratio", "up"),
    "complaints": ("count", "down"),
    "complaint_ratio": ("ratio", "down"),
    "csat": ("score5", "up"),
    "qa_score": ("score100", "up"),
    "report_timeliness": ("ratio", "up"),
    "report_truthfulness": ("ratio", "up"),
    "report_quality": ("score100", "up"),
}
KPI_NAMES = tuple(KPIS)


def format_kpi(kpi: str, value) -> str:
    """A KPI value as a person reads it: 41.5%, 45.0 s, ¥1,234.50, 1,386; – without data."""
    if value is None:
        return "–"
    kind = KPIS[kpi][0]
    if kind == "ratio":
        return f"{value * 100:.1f}%"
    if kind == "seconds":
        return f"{value:.1f} s"
    if kind == "amount":
        return f"¥{value:,.2f}"
    if kind == "count":
        return f"{int(value):,}"
    return f"{value:.2f}"
