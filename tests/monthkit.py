"""A hand-worked month of eight agents for the month-end tests (unit and store).

Every agent has the same KPIs except where said, so the ranking is decided by
the reviews; the arithmetic is written beside each figure."""

from cspulse.monthend.scoring import AgentMonth

# The same month for everyone, scored on the default scorecard:
BASE = {
    "served_customers": 40,
    "inquiry_conversion_rate": 0.40,   # 100 × (0.40 − 0.20) / (0.60 − 0.20) = 50     × weight 20
    "avg_response_time_s": 45.0,       # 100 × (45 − 120) / (20 − 120)      = 75     × 15
    "churn_rate": 0.40,                # 100 × (0.40 − 0.60) / (0.20 − 0.60) = 50    × 10
    "order_amount": 8000.0,            # 100 × 8000 / team max 10000        = 80     × 10
    "valid_order_ratio": 0.84,         # 100 × (0.84 − 0.70) / (0.98 − 0.70) = 50    × 10
    "payment_ratio": 0.95,             # best                               = 100    × 5
    "refund_ratio": 0.02,              # best                               = 100    × 5
    "avg_order_value": 200.0,          # 100 × 200 / team max 250           = 80     × 5
    "complaint_ratio": 0.01,           # 100 × (0.01 − 0.05) / (0 − 0.05)   = 80     × 15
    "abnormal_order_ratio": 0.0,       # best                               = 100    × 5
    # KPI score = (1000 + 1125 + 500 + 800 + 500 + 500 + 500 + 400 + 1200 + 500) / 100 = 70.25
    "qa_score": 80.0,
    "report_timeliness": 1.0, "report_truthfulness": 0.5, "report_quality": 60.0,
    # management score = (100 + 50 + 60) / 3 = 70
}
# manager component = 0.6 × 70.25 + 0.1 × 80 + 0.1 × 70 + 0.2 × review = 57.15 + 0.2 × review
# total = 0.3 × self + 0.7 × (57.15 + 0.2 × review) = 40.005 + 0.3 × self + 0.14 × review
NO_ORDERS = {**BASE, "order_amount": 0.0, "valid_order_ratio": None, "payment_ratio": None, "refund_ratio": None,
             "avg_order_value": None, "abnormal_order_ratio": None}
# KPI score without the order ratios = (20×50 + 15×75 + 10×50 + 10×0 + 15×80) / (20+15+10+10+15) = 3825 / 70


def month(**changes):
    agents = {
        "ann": AgentMonth("ann", BASE, 90, 80),             # 40.005 + 27 + 11.2 = 78.205 -> 78.21
        "bob": AgentMonth("bob", BASE, 97, 65),             # 40.005 + 29.1 + 9.1 = 78.205 -> 78.21 (tie)
        # cat has the team's best amounts: KPI score = 70.25 + (10 × 20 + 5 × 20) / 100 = 73.25;
        # manager = 0.6 × 73.25 + 8 + 7 + 14 = 72.95; total = 24 + 0.7 × 72.95 = 75.065 -> 75.07
        "cat": AgentMonth("cat", {**BASE, "order_amount": 10000.0, "avg_order_value": 250.0}, 80, 70),
        "dan": AgentMonth("dan", NO_ORDERS, 80, 70),        # below
        "eve": AgentMonth("eve", BASE, 50, 50),             # 40.005 + 15 + 7 = 62.005 -> 62.01
        "fay": AgentMonth("fay", BASE, 57, 35),             # 40.005 + 17.1 + 4.9 = 62.005 -> 62.01 (tie)
        # served too few to be ranked, so not in the team whose maximum scores the amounts
        "gus": AgentMonth("gus", {**BASE, "served_customers": 12}, 100, 100),
        "hal": AgentMonth("hal", BASE, 60, None),           # no manager review
    }
    agents.update(changes)
    return list(agents.values())
