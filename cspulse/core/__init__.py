"""The pure KPI core (SPEC §2–§3): no I/O, no faust, kafka, sqlmodel or prometheus.

Time is a parameter everywhere: event times drive every decision.
"""

from .book import SHOP, KpiBook, goal_progress, kpis_from_counts
from .events import EVENT_TYPES, TOPIC_OF, Event, Rejected, decode, encode
from .kpi_names import KPI_NAMES, KPIS
from .params import Params
from .pipeline import Pipeline, Stats

__all__ = ["SHOP", "KpiBook", "goal_progress", "kpis_from_counts", "EVENT_TYPES", "TOPIC_OF", "Event",
           "Rejected", "decode", "encode", "KPI_NAMES", "KPIS", "Params", "Pipeline", "Stats"]
