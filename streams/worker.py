"""`cspulse worker`: the pure core inside Faust, one `Pipeline` per Kafka partition.

Chat, orders, feedback and reviews share one partition count, so partition p of
every input topic is one unit of work: the customers whose key hashes to p and
the agents whose key hashes to p (reviews and spot checks are keyed by agent).
The agent stays thin: it feeds each message to its partition's pipeline and
writes back, into changelog-backed tables, exactly what changed: the customers
(their held events, timers and recent ids included), the agents, the book's
buckets and the partition's clock.  With `exactly_once` those writes, the dead
letters and the consumed offsets commit together, so a killed worker resumes
from the last transaction: nothing lost, nothing counted twice.

Facts are summed per partition and the partitions are summed when KPIs are
read (sums commute), so no repartition hop is needed; each worker writes its
partitions' books to the store and the KPI values are recomputed from all of
them.  The stored KPIs are a view "as of" now: held events applied and due
timers fired on copies (`Pipeline.view`), the stream's state untouched.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import pickle
import time
from collections import defaultdict

from kafka.partitioner.default import murmur2
from sqlmodel import Session

from cspulse.core import Pipeline, Rejected
from cspulse.core.params import US
from store import repo
from streams.app import SETTINGS, app
from streams.topics import CO_PARTITIONED, INPUT_TOPICS, REJECTED

log = logging.getLogger(__name__)
PREFIX = SETTINGS.topic_prefix
PARTITIONS = SETTINGS.partitions

inputs = app.topic(*(PREFIX + t for t in INPUT_TOPICS), key_type=bytes, value_type=bytes,
                   key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
rejected_topic = app.topic(PREFIX + REJECTED, key_type=bytes, value_type=bytes, key_serializer="raw",
                           value_serializer="raw", partitions=PARTITIONS)

_state = dict(key_type=str, value_type=bytes, partitions=PARTITIONS)   # bytes values: the raw codec
customers = app.Table("customers", **_state)
agents = app.Table("agents", **_state)
books = app.Table("books", **_state)      # "p|who|period" -> counters; who "" is the shop
clocks = app.Table("clocks", **_state)    # "@p" -> the partition's clock and stats

pipelines: dict[int, Pipeline] = {}
# The customer-keyed inputs whose event times must line up; reviews and spot checks
# go to the order-independent desk. An input silent this long stops holding the others back.
ORDERED_INPUTS = frozenset(PREFIX + t for t in CO_PARTITIONED)
IDLE_S = 2.0
_last_heard: dict[tuple[int, str], float] = {}


def partition_of(key: str) -> int:
    """The partition Kafka's default partitioner gives a key (murmur2, as kafka-python and aiokafka)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def _restore(p: int) -> Pipeline:
    """The pipeline of partition p, rebuilt from the tables (recovered from their changelogs)."""
    pl = Pipeline(SETTINGS.params())
    pl.ledger.customers = {cid: pickle.loads(v) for cid, v in customers.items() if partition_of(cid) == p}
    pl.ledger.reindex()
    pl.desk.agents = {aid: pickle.loads(v) for aid, v in agents.items() if partition_of(aid) == p}
    head = f"{p}|"
    for key, value in books.items():
        if key.startswith(head):
            _, who, period = key.split("|", 2)
            pl.book.stated[(who or None, period)] = defaultdict(int, pickle.loads(value))
    clock = clocks.get(f"@{p}")
    if clock is not None:
        pl.max_ts, pl.stats, pl.ledger.next_sweep, pl.input_max = pickle.loads(clock)
    pl.expected_inputs = ORDERED_INPUTS
    pl.track_changes()
    log.info("partition %d: %d customers, %d agents restored", p, len(pl.ledger.customers), len(pl.desk.agents))
    return pl


def _write_back(p: int, pl: Pipeline) -> None:
    """Assign back what changed (a table value changed in place is lost on recovery)."""
    changed, removed, agents_changed, buckets = pl.drain_changes()
    held = pl.ledger.customers
    for cid in changed:
        if cid in held:
            customers[cid] = pickle.dumps(held[cid], pickle.HIGHEST_PROTOCOL)
    for cid in removed:
        if cid not in held and cid in customers:
            del customers[cid]
    for aid in agents_changed:
        agents[aid] = pickle.dumps(pl.desk.agents[aid], pickle.HIGHEST_PROTOCOL)
    for who, period in buckets:
        books[f"{p}|{who or ''}|{period}"] = pickle.dumps(dict(pl.book.stated[(who, period)]))
    clocks[f"@{p}"] = pickle.dumps((pl.max_ts, pl.stats, pl.ledger.next_sweep, pl.input_max))


@app.agent(inputs)
async def process(stream):
    async for event in stream.events():
        p = event.message.partition
        pl = pipelines.get(p)
        if pl is None:
            pl = pipelines[p] = _restore(p)
        topic, wall = event.message.topic, time.monotonic()
        _last_heard[(p, topic)] = wall
        idle = {t for t in ORDERED_INPUTS if wall - _last_heard.setdefault((p, t), wall) > IDLE_S}
        bad = pl.feed_line(event.value, topic, idle)
        if isinstance(bad, Rejected):
            envelope = {"reason": bad.reason, "source": f"{event.message.topic}:{p}:{event.message.offset}",
                        "event_id": bad.event_id, "raw": event.value.decode("utf-8", "replace")}
            await rejected_topic.send(key=event.key, value=json.dumps(envelope, ensure_ascii=False).encode())
        _write_back(p, pl)


async def _forget_partitions(app, partitions, **kwargs) -> None:
    # After any rebalance a partition is rebuilt from the tables, which hold its latest state.
    pipelines.clear()


app.on_partitions_revoked.connect(_forget_partitions)
app.on_partitions_assigned.connect(_forget_partitions)


def _snapshot_views() -> tuple[dict[int, dict], list]:
    """Each local partition's book as of now, and the goals of its agents (on the loop thread)."""
    now = round(time.time() * US)
    views, goals = {}, []
    for p, pl in list(pipelines.items()):
        book = pl.view(max(now, pl.max_ts or 0))
        views[p] = {f"{who or ''}|{period}": dict(b) for (who, period), b in book.stated.items()}
        goals += repo.goal_rows(pl.desk.agents)
    return views, goals


def _store(views: dict[int, dict], goals: list) -> None:
    with Session(_engine()) as session:
        repo.write_partition_books(views, session=session)
        repo.write_kpis(repo.kpis_from_partition_books(session=session), session=session)
        repo.write_goals(goals, session=session)
        session.commit()


@functools.cache
def _engine():
    return repo.connect(SETTINGS.database_url)


@app.timer(SETTINGS.store_interval_s)
async def store_kpis() -> None:
    if pipelines:
        views, goals = _snapshot_views()
        try:
            await asyncio.to_thread(_store, views, goals)
        except Exception:   # a busy or unreachable store must not stop the stream: next tick retries
            log.exception("writing KPIs to the store failed; retrying in %.0f s", SETTINGS.store_interval_s)


@app.on_before_shutdown.connect
def _store_on_shutdown(app, **kwargs) -> None:
    if pipelines:
        try:
            _store(*_snapshot_views())
        except Exception:
            log.exception("writing KPIs to the store at shutdown failed")
