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

from cspulse.core import KpiBook, Pipeline
from cspulse.core.params import US
from cspulse.core.shopclock import ShopClock
from store import repo
from streams.app import SETTINGS, app
from streams.metrics import make_metrics, tally
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
# Up to 2000 events, or what came within 200 ms: bigger batches write fewer changelog
# messages (measured: 3.3k events/s at 50 ms, 3.8k/s at 200 ms); /metrics refreshes each second anyway.
BATCH, BATCH_WITHIN_S = 2000, 0.2
_last_heard: dict[tuple[int, str], float] = {}
metrics = make_metrics(app)     # /metrics on the web port: Faust's sensor and ours, one registry
_remote: dict[int, dict] = {}   # every partition's book as last read from the store (other workers')


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


# Changelog messages of the batch being processed, published (awaited) before its events
# are acknowledged.  `table[key] = value` would send to the partition of the *current*
# event, and `send_changelog` through Faust's producer buffer, which a transaction commit
# does not flush: a message still buffered when its partition's transaction ends (a
# rebalance, a commit) is sent outside any transaction and the producer crashes, or
# lands in the next transaction after its offsets were committed.
_outgoing: list[tuple] = []


def _put(table, p: int, key: str, value: bytes) -> None:
    _outgoing.append((table, p, key, value))
    table.data[key] = value


def _drop(table, p: int, key: str) -> None:
    _outgoing.append((table, p, key, None))
    del table.data[key]


async def _publish() -> None:
    """Hand the batch's changelog messages to the producer, in the partitions' transactions."""
    batch = list(_outgoing)
    _outgoing.clear()
    for table, p, key, value in batch:
        await table.changelog_topic.send(
            key=key, value=value, partition=p, key_serializer=table.key_serializer,
            value_serializer=table.value_serializer if value is not None else "raw",
            callback=table._on_changelog_sent, force=True)


def _write_back(p: int, pl: Pipeline) -> None:
    """Assign back what changed since the last write-back (a table value changed in
    place is lost on recovery), once per batch however often a key changed in it."""
    changed, removed, agents_changed, buckets = pl.drain_changes()
    held, dumps, top = pl.ledger.customers, pickle.dumps, pickle.HIGHEST_PROTOCOL
    for cid in changed:
        if cid in held:
            _put(customers, p, cid, dumps(held[cid], top))
    for cid in removed:
        if cid not in held and cid in customers.data:
            _drop(customers, p, cid)
    for aid in agents_changed:
        _put(agents, p, aid, dumps(pl.desk.agents[aid], top))
    for who, period in buckets:
        _put(books, p, f"{p}|{who or ''}|{period}", dumps(dict(pl.book.stated[(who, period)]), top))
    _put(clocks, p, f"@{p}", dumps((pl.max_ts, pl.stats, pl.ledger.next_sweep, pl.input_max), top))


def _feed(p: int, batch: list) -> list[tuple[bytes | None, bytes]]:
    """Feed one partition's share of a batch to its pipeline and write back; return the dead letters."""
    pl = pipelines.get(p)
    if pl is None:
        pl = pipelines[p] = _restore(p)
    wall = time.monotonic()
    for event in batch:
        _last_heard[(p, event.message.topic)] = wall
    idle = {t for t in ORDERED_INPUTS if wall - _last_heard.setdefault((p, t), wall) > IDLE_S}
    dead, before = [], tally(pl.stats)
    for event in batch:
        message = event.message
        bad = pl.feed_line(event.value, message.topic, idle)
        if bad is not None:
            envelope = {"reason": bad.reason, "source": f"{message.topic}:{p}:{message.offset}",
                        "event_id": bad.event_id, "raw": event.value.decode("utf-8", "replace")}
            dead.append((event.key, json.dumps(envelope, ensure_ascii=False).encode()))
    _write_back(p, pl)
    metrics.count(before, tally(pl.stats))
    return dead


@app.agent(inputs)
async def process(stream):
    # Batches amortise Faust's per-event cost and write each changed key once; the
    # events of a batch are acknowledged only after it is processed and written back.
    async for batch in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        started = time.perf_counter()
        shares: dict[int, list] = defaultdict(list)
        for event in batch:
            shares[event.message.partition].append(event)
        dead = [(p, letter) for p, share in shares.items() for letter in _feed(p, share)]
        await _publish()
        for p, (key, envelope) in dead:
            await rejected_topic.send(key=key, value=envelope, partition=p, force=True)
        metrics.batch.observe(time.perf_counter() - started)
        metrics.lag.set(max(0.0, time.time() - max(e.message.timestamp for e in batch)))


async def _forget_partitions(app, partitions, **kwargs) -> None:
    # After any rebalance a partition is rebuilt from the tables, which hold its latest state.
    pipelines.clear()


app.on_partitions_revoked.connect(_forget_partitions)
app.on_partitions_assigned.connect(_forget_partitions)


def _as_of(pl: Pipeline, now: int, month: str | None = None) -> KpiBook:
    # not before the newest event: a producer's clock may run ahead of ours
    return pl.view(max(now, pl.max_ts or 0), month)


def _snapshot_views() -> tuple[dict[int, dict], list]:
    """Each local partition's book as of now, and the goals of its agents (on the loop thread)."""
    now = round(time.time() * US)
    views, goals = {}, []
    for p, pl in list(pipelines.items()):
        book = _as_of(pl, now)
        views[p] = {f"{who or ''}|{period}": dict(b) for (who, period), b in book.stated.items()}
        goals += repo.goal_rows(pl.desk.agents)
    return views, goals


def _store(views: dict[int, dict], goals: list) -> dict[int, dict]:
    """Write this worker's partition books, the KPIs of all of them and the goals; return all the books."""
    with Session(_engine()) as session:
        repo.write_partition_books(views, session=session)
        every = repo.partition_books(session=session)
        book = KpiBook()
        for buckets in every.values():
            book.add_buckets(buckets)
        repo.write_kpis(book.all_kpis(), session=session)
        repo.write_goals(goals, session=session)
        session.commit()
        return every


@functools.cache
def _engine():
    return repo.connect(SETTINGS.database_url)


@app.timer(SETTINGS.store_interval_s)
async def store_kpis() -> None:
    # Also with no partition of its own: it still reads the others' books for /metrics.
    views, goals = _snapshot_views()
    try:
        _remote.update(await asyncio.to_thread(_store, views, goals))
    except Exception:   # a busy or unreachable store must not stop the stream: next tick retries
        metrics.store_errors.inc()
        log.exception("writing KPIs to the store failed; retrying in %.0f s", SETTINGS.store_interval_s)


@functools.cache
def _clock() -> ShopClock:
    return ShopClock(SETTINGS.params())


def live_kpis() -> dict[tuple[str | None, str], dict]:
    """Today's and month-to-date KPIs of the whole shop: this worker's partitions as of
    now, the others' as last stored (by the workers that own them)."""
    now = round(time.time() * US)
    day = _clock().day(now)
    month = day[:7]
    book = KpiBook()
    for pl in list(pipelines.values()):
        book.add_buckets(_as_of(pl, now, month).stated)
    for p, buckets in list(_remote.items()):
        if p not in pipelines:
            book.add_buckets({k: v for k, v in buckets.items() if k[1].startswith(month)})
    return book.windows(day)


_next_refresh = 0.0


@app.timer(SETTINGS.metrics_interval_s)
async def refresh_live_kpis() -> None:
    # While a backlog streams in, every customer changes between refreshes and a refresh
    # costs more: space them so they take at most a fifth of the loop's time.
    global _next_refresh
    started = time.monotonic()
    if started < _next_refresh:
        return
    metrics.kpis.snapshot = live_kpis()
    metrics.kpis_updated.set(time.time())
    _next_refresh = started + 5 * (time.monotonic() - started)


@app.on_before_shutdown.connect
def _store_on_shutdown(app, **kwargs) -> None:
    if pipelines:
        try:
            _store(*_snapshot_views())
        except Exception:
            log.exception("writing KPIs to the store at shutdown failed")
