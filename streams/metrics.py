"""The worker's Prometheus metrics: one factory, one registry, Faust's sensor beside ours.

Ours all start with `cspulse_` and follow Prometheus naming (base units, `_total`
on counters); Faust's own keep the `faust_` prefix (some of their names fail
`promtool` lint, so they are kept apart).

The live KPIs are read at scrape time from a snapshot the worker refreshes
(`KpiCollector.snapshot`), one gauge family per KPI:

    cspulse_agent_<kpi>{agent_id, window="today"|"month"}
    cspulse_shop_<kpi>{window}

Only agents with data today or this month have series, so an agent who leaves
drops out at the next month without any bookkeeping, and a KPI with no data
(a ratio with a zero denominator) has no series rather than a NaN.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Iterable, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from cspulse.core import KPIS, TOPIC_OF
from cspulse.core.pipeline import Stats

_UNIT = {"seconds": "_seconds", "ratio": "_ratio", "amount": "_cny", "score5": "_score", "score100": "_score",
         "count": ""}
_DOC = {"seconds": "seconds", "ratio": "ratio 0..1", "amount": "CNY", "score5": "score 1..5",
        "score100": "score 0..100", "count": "count in the window"}


def metric_name(kpi: str) -> str:
    """`avg_response_time_s` -> `avg_response_time_seconds`, `churn_rate` -> `churn_ratio`…"""
    kind = KPIS[kpi][0]
    stem = kpi.removesuffix("_s").removesuffix("_rate").removesuffix("_ratio")
    return stem + _UNIT[kind]


KPI_METRICS = {kpi: metric_name(kpi) for kpi in KPIS}


class KpiCollector:
    """Per-agent and shop KPIs for today and month-to-date, from the latest snapshot."""

    def __init__(self) -> None:
        # (agent_id or None for the shop, window) -> {kpi: value or None}
        self.snapshot: dict[tuple[str | None, str], dict] = {}

    def collect(self) -> Iterable[GaugeMetricFamily]:
        snapshot = self.snapshot
        for kpi, name in KPI_METRICS.items():
            doc = f"SPEC §3 {kpi} ({_DOC[KPIS[kpi][0]]})"
            agent = GaugeMetricFamily(f"cspulse_agent_{name}", f"Agent's {doc}", labels=["agent_id", "window"])
            shop = GaugeMetricFamily(f"cspulse_shop_{name}", f"Shop's {doc}", labels=["window"])
            for (who, window), values in snapshot.items():
                value = values.get(kpi)
                if value is None:
                    continue
                if who is None:
                    shop.add_metric([window], value)
                else:
                    agent.add_metric([who, window], value)
            yield agent
            yield shop

    def describe(self) -> list:
        return []   # families depend on the data; nothing to check for duplicates up front


class FiringCollector:
    """`cspulse_alerts_firing{rule,severity}`: alerts firing now, read at scrape time."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}    # (rule, severity) -> firing; replaced whole

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily("cspulse_alerts_firing", "Alerts firing now, by rule and severity",
                              labels=["rule", "severity"])
        for (rule, severity), n in sorted(self.counts.items()):
            g.add_metric([rule, severity], n)
        yield g

    def describe(self) -> list:
        return []


class Tallies(NamedTuple):
    types: Tally
    duplicates: int
    late: int
    rejected: Tally


def tally(stats: Stats) -> Tallies:
    return Tallies(Tally(stats.types), stats.duplicates, stats.late, Tally(stats.rejected))


class Metrics:
    """Every metric of ours, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("cspulse_events", "Valid input events read, by SPEC topic and event type",
                              ["topic", "type"], registry=registry)
        self.duplicates = Counter("cspulse_duplicate_events", "Events dropped as already counted (same event_id)",
                                  registry=registry)
        self.late = Counter("cspulse_late_events", "Events older than the allowed lateness when they arrived",
                            registry=registry)
        self.rejected = Counter("cspulse_rejected_events", "Malformed events sent to the dead-letter topic, by reason",
                                ["reason"], registry=registry)
        self.lag = Gauge("cspulse_processing_lag_seconds",
                         "Wall time now minus the Kafka timestamp of the newest message processed", registry=registry)
        self.batch = Histogram("cspulse_batch_duration_seconds", "Time to process and write back one batch",
                               buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5), registry=registry)
        self.store_errors = Counter("cspulse_store_errors",
                                    "Failed reads and writes of the store (KPIs, event ids, month-end)",
                                    registry=registry)
        self.ids_unstored = Gauge("cspulse_event_ids_unstored",
                                  "Applied event ids not yet in the store, which finds duplicates older than the "
                                  "in-memory horizon (grows while the store cannot be written)", registry=registry)
        self.ids_dropped = Counter("cspulse_event_ids_dropped",
                                   "Applied event ids dropped unstored after the store could not be written for "
                                   "long: a duplicate of their events more than two days late counts again",
                                   registry=registry)
        self.gaps_reread = Counter("cspulse_input_gaps_reread",
                                   "Gaps between what an input partition's state holds and the next event Faust "
                                   "delivered (offsets it skipped), read again from Kafka", registry=registry)
        self.stalled = Gauge("cspulse_input_partitions_stalled",
                             "Input partitions held with messages waiting whose applied offset has not moved "
                             "for 60 s, at the last check; each is sought again (one that stays: restart the worker)", registry=registry)
        self.paused = Gauge("cspulse_input_partitions_paused",
                            "Input partitions not read for now: read ahead of their partition's slowest input "
                            "in event time", registry=registry)
        self.kpis_updated = Gauge("cspulse_kpis_updated_timestamp_seconds",
                                  "Unix time of the KPI snapshot behind the cspulse_agent_*/cspulse_shop_* series",
                                  registry=registry)
        self.kpis = KpiCollector()
        registry.register(self.kpis)
        self.alerts = Counter("cspulse_alerts", "Alerts fired (a new firing of a key; repeats not counted)",
                              ["rule", "severity"], registry=registry)
        self.firing = FiringCollector()
        registry.register(self.firing)
        self.loop_lag = Histogram("cspulse_event_loop_lag_seconds",
                                  "How late a 100 ms tick of the worker's event loop ran (a stalled loop delays "
                                  "batches, alerts and scrapes)",
                                  buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5), registry=registry)
        self.full_gc = Histogram("cspulse_full_gc_seconds",
                                 "How long each full garbage collection held the event loop (every 15 min, "
                                 "less often when they take long)",
                                 buckets=(.01, .05, .1, .25, .5, 1, 2.5, 5, 10), registry=registry)
        self.notes_dropped = Counter("cspulse_alert_notes_dropped",
                                     "Notes for the alert rules dropped, oldest first, while the store could not "
                                     "be read (the stored alerts are read before any rule runs)", registry=registry)
        self.alert_delivery_errors = Counter("cspulse_alert_delivery_errors",
                                             "Failed sends of alerts to cs.alerts (retried)", registry=registry)

    def count(self, before: Tallies, after: Tallies) -> None:
        """Add what one batch changed (the difference of two tallies of a pipeline's stats)."""
        for kind, n in (after.types - before.types).items():
            self.events.labels(TOPIC_OF[kind], kind).inc(n)
        for reason, n in (after.rejected - before.rejected).items():
            self.rejected.labels(reason).inc(n)
        if after.duplicates > before.duplicates:
            self.duplicates.inc(after.duplicates - before.duplicates)
        if after.late > before.late:
            self.late.inc(after.late - before.late)


def make_metrics(app) -> Metrics:
    """Our metrics and Faust's Prometheus sensor on one fresh registry, served as
    `/metrics` by the app's web server."""
    from faust.sensors.prometheus import setup_prometheus_sensors
    registry = CollectorRegistry()
    setup_prometheus_sensors(app, registry=registry, name_prefix="faust")
    return Metrics(registry)
