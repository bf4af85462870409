"""`cspulse worker`: the pure core inside Faust, one `Pipeline` per Kafka partition.

Chat, orders, feedback and reviews share one partition count, so partition p of
every input topic is one unit of work: the customers whose key hashes to p and
the agents whose key hashes to p (reviews and spot checks are keyed by agent).
Faust owns the group (an agent subscribes to the inputs) and the tables; the
inputs are read in batches by a consumer of the worker's own (`streams/inputs.py`,
`read_inputs`), which feeds each record to its partition's pipeline and writes
back, into changelog-backed tables, exactly what changed: the customers (their
timers and recent ids included), the events held in the batch (each written
once, `streams/held_log.py`), the agents, the book's buckets and the partition's
clock with the input offsets its state includes.  Those writes, the dead letters
and the consumed offsets commit together in the partition's transaction
(`_commit`), and a restored partition is read from the offsets its state
records, so a killed worker resumes from the last transaction: nothing lost,
nothing counted twice.

Facts are summed per partition and the partitions are summed when KPIs are
read (sums commute), so no repartition hop is needed; each worker writes its
partitions' books to the store and the KPI values are recomputed from all of
them.  The stored KPIs are a view "as of" now: held events applied and due
timers fired on copies (`Pipeline.view`), the stream's state untouched; while a
partition reads a backlog, its book as the stream has applied it (`_looks_ahead_now`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import os
import pickle
import threading
import time
from datetime import datetime, timezone
from collections import defaultdict

from sqlmodel import Session

from cspulse.core import KpiBook, Pipeline
from cspulse.core.params import US
from cspulse.core.shopclock import ShopClock
from cspulse.monthend.service import plan_states
from store import repo
from streams.alerting import AlertsProcess, WorkerAlerts, now_us
from streams.app import SETTINGS, app
from streams.commit_guard import whole_batch
from streams.held_log import HeldSegments, RecentIds, dump_customer, load_customer
from streams.inputs import InputReader, inputs_ahead, keep_faust_off
from streams.metrics import make_metrics, tally
from streams.stalls import StallWatch
from streams import changelog, closing
from streams.topics import ALERTS, CO_PARTITIONED, CONSEQUENCES, INPUT_TOPICS, REJECTED, key_hash
from streams.unstored_ids import UnstoredIds

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
held_events = app.Table("held", **_state)  # "p#seq" -> events held in one batch (streams/held_log.py)

pipelines: dict[int, Pipeline] = {}
_segments: dict[int, HeldSegments] = {}
_ids: dict[int, RecentIds] = {}
# The customer-keyed inputs whose event times must line up; reviews and spot checks
# go to the order-independent desk. An input silent this long stops holding the others
# back, but only once it is read to its end (last processed offset at the partition's
# high watermark): after a rebalance or in a backlog an input can go unread for seconds
# with its messages waiting, and letting the others run ahead would make them late
# (measured: a worker's partitions paused by a rebalance counted an unanswered wait twice).
ORDERED_INPUTS = frozenset(PREFIX + t for t in CO_PARTITIONED)
ALL_INPUTS = frozenset(PREFIX + t for t in INPUT_TOPICS)
IDLE_S = 2.0
_read_to_end: set[tuple[int, str]] = set()        # (partition, input topic) read to its end, as last checked
# Up to 2000 records, or what came within 100 ms: a backlog comes in full batches
# (fewer loop turns), and a live event waits at most 100 ms for its batch (an
# alert's latency; measured at 1,000 events/s: p99 413 ms at 100 ms, 511 ms at 200 ms).
BATCH, BATCH_WITHIN_S = 2000, 0.1
_last_heard: dict[tuple[int, str], float] = {}
# A customer's held events are applied together once the oldest is 30 s past the allowed
# lateness (`Pipeline.gather`): every customer applied is written to the changelog, and
# applying each event alone wrote a customer writing every few seconds once per event a
# second time.  Measured in process (the bench's two live loads at a tenth of their
# rate, 100 ms batches, past 660 s): customers written a batch 59 -> 36 (chatty) and
# 56 -> 32 (conversations), where it is 30 before the first events are applied.
GATHER_US = 30 * US
metrics = make_metrics(app)     # /metrics on the web port: Faust's sensor and ours, one registry
alerting = (AlertsProcess if SETTINGS.rules_process else WorkerAlerts)(
    SETTINGS.rules, SETTINGS.params(), metrics, webhooks=SETTINGS.webhooks, shop=SETTINGS.shop_id)
if isinstance(alerting, AlertsProcess):     # its answers are taken in as they come (`_answers_came`)
    alerting.started = lambda fd: asyncio.get_running_loop().add_reader(fd, _answers_came)


def partition_of(key: str) -> int:
    """The input partition of a key (as Kafka's default partitioner gives it)."""
    return key_hash(key.encode()) % PARTITIONS


_TABLES = (customers, agents, books, clocks, held_events)
_OWNER = {  # a table key -> the partition whose state it belongs to (the changelog partition it is written to)
    "customers": partition_of, "agents": partition_of,
    "books": lambda key: int(key.split("|", 1)[0]),
    "clocks": lambda key: int(key[1:]),
    "held": lambda key: int(key.split("#", 1)[0]),
}


async def _recover(ps: list[int]) -> None:
    """Rebuild these partitions' pipelines from their changelogs, read by the worker itself to
    their committed end (`changelog.read_to_end`, which says why not from Faust's recovery).
    The tables' keys for these partitions are replaced by those read too, so the
    write-backs (which delete a key only if the table has it) see what Kafka holds."""
    if not ps:
        return
    from aiokafka import TopicPartition
    tps = {TopicPartition(t.changelog_topic.get_topic_name(), p): (t, p) for t in _TABLES for p in ps}
    await changelog.check_partitions(SETTINGS.kafka, list(tps))
    consumer = _plain_consumer("cspulse-restore")
    await consumer.start()
    try:
        state = await changelog.read_to_end(consumer, list(tps))
    finally:
        await consumer.stop()
    wanted = set(ps)
    for table in _TABLES:
        owner = _OWNER[table.name]
        for key in [k for k in table.data if owner(k) in wanted]:
            del table.data[key]
    for tp, (table, p) in tps.items():
        table.data.update(dict.fromkeys(state[tp], KEPT))
    for p in ps:
        pipelines[p] = _restore(p, {table.name: state[tp] for tp, (table, q) in tps.items() if q == p})
    try:
        forgotten = await asyncio.to_thread(_forget_uncommitted_ids, {p: _epoch[p] for p in ps})
        if forgotten:
            log.info("forgot %d event ids stored with write-backs the committed states do not hold", forgotten)
    except Exception:
        metrics.store_errors.inc()
        log.exception("forgetting the stored ids of uncommitted write-backs failed: an event of those more "
                      "than %.0f h older than the newest can be taken for a duplicate when read again",
                      SETTINGS.params().dedup_horizon_s / 3600)


def _restore(p: int, read: dict[str, dict[str, bytes]]) -> Pipeline:
    """The pipeline of partition p, rebuilt from what its changelogs hold (`read`: table
    name -> key -> value, as `_recover` read them)."""
    pl = Pipeline(SETTINGS.params())
    _segments[p], held = HeldSegments.restore(p, read["held"].items())
    _ids[p] = RecentIds()
    pl.ledger.customers = {cid: load_customer(v, held, cid) for cid, v in read["customers"].items()}
    pl.ledger.reindex()
    pl.desk.agents = {aid: pickle.loads(v) for aid, v in read["agents"].items()}
    for key, value in read["books"].items():
        _, who, period = key.split("|", 2)
        pl.book.stated[(who or None, period)] = defaultdict(int, pickle.loads(value))
    clock = read["clocks"].get(f"@{p}")
    if clock is not None:
        saved = pickle.loads(clock)
        pl.max_ts, pl.stats, pl.ledger.next_sweep, pl.input_max = saved[:4]
        # the input offsets the state includes (older states did not say: trust the consumer)
        _applied[p] = saved[4] if len(saved) > 4 else {t: _UNKNOWN for t in ALL_INPUTS}
        _epoch[p] = saved[5] if len(saved) > 5 else 0
        if len(saved) > 6:
            pl.ids_from = saved[6]
        else:
            pl.assume_ids_forgotten()       # (older states did not say)
    else:
        _applied[p] = {}
        _epoch[p] = 0
    _unstored_ids[p] = UnstoredIds()
    pl.track_ids = True
    pl.seen_before = functools.partial(_seen_before, p)
    pl.expected_inputs = ORDERED_INPUTS
    pl.gather = GATHER_US
    pl.track_changes()
    # held events in no segment (a customer written whole by an older version) get one
    pl.ledger.fresh = [(cid, item) for cid, c in pl.ledger.customers.items()
                       for item in c.pending if item[2] not in held.get(cid, ())]
    pl.collect_notes()
    log.info("partition %d: %d customers, %d agents restored", p, len(pl.ledger.customers), len(pl.desk.agents))
    return pl


# Changelog messages of the partitions being written back (`_write_back_unwritten`),
# queued in their transactions before their offsets are committed.  `table[key] = value` would send to the partition
# of the *current* event, and `send_changelog` through Faust's producer buffer, which a
# transaction commit does not flush: a message still buffered when its partition's
# transaction ends (a rebalance, a commit) is sent outside any transaction and the
# producer crashes, or lands in the next transaction after its offsets were committed.
# `streams/changelog.py` queues them in the partitions' transactional producers directly.
_outgoing: list[tuple] = []
# A table's data says which keys its changelog holds, not their values: the pipelines
# hold the state, and a second copy of every customer as bytes was a sixth of the
# worker's memory (226 of 1,282 MB at 840 s of bench/worker.py's chatty load at 2,000
# events/s, run through `_feed` and `_write_back` in process).
KEPT = True


def _put(table, p: int, key: str, value: bytes) -> None:
    _outgoing.append((table.changelog_topic.get_topic_name(), p, key, value))
    table.data[key] = KEPT


def _drop(table, p: int, key: str) -> None:
    _outgoing.append((table.changelog_topic.get_topic_name(), p, key, None))
    del table.data[key]


# When the state is written back: after every batch while the inputs come live (a batch
# within its 100 ms), so each batch's share of the work is done with it and handed over
# while the next batch is computed; once a commit (2.8 s) while a backlog comes in full
# batches, so a customer, agent or book changed in several batches is written once
# (measured in process, the worker's batch path on 20 agents x 6 days without the rules:
# 44 -> 31 µs an event).  Written once a commit under a live load too, the write-back
# held the loop a quarter of a second every 2.8 s, and an alert's p99 rose from 218-292
# to 565-659 ms a 10 s (`bench/alerts.py --rate 2000 --seconds 60 --latency-only`).
# Either way a commit writes back every partition fed since its last write-back first,
# so the offsets it commits are those of the state in the same transaction.
_unwritten: set[int] = set()      # partitions fed since their last write-back
_dead_letters: list[tuple[int, tuple[bytes | None, bytes]]] = []   # sent with their partitions' write-back
_in_flight: dict[int, list] = defaultdict(list)    # partition -> sends of its open transaction (`changelog.settle`)
_publishing: asyncio.Future | None = None


async def _write_back_unwritten() -> None:
    """Write back every partition fed since its last write-back, and start handing the
    messages and dead letters to the partitions' transactions (after the previous
    hand-over: one at a time, in order; a commit waits for it, `_published`)."""
    global _publishing
    await _published()
    for p in sorted(_unwritten):
        _write_back(p, pipelines[p])
    _unwritten.clear()
    messages, dead = list(_outgoing), list(_dead_letters)
    _outgoing.clear()
    _dead_letters.clear()
    _publishing = asyncio.ensure_future(_hand_over(messages, dead))


async def _published() -> None:
    """Wait until the messages being handed over are in the transactions (raising what failed)."""
    global _publishing
    if _publishing is not None:
        task, _publishing = _publishing, None
        await task


async def _hand_over(messages: list[tuple], dead: list) -> None:
    """Queue changelog messages and dead letters in the partitions' transactions (their
    futures kept in `_in_flight`: checked before the transactions commit)."""
    async with whole_batch(app.consumer):
        for p, futures in (await changelog.publish(app, messages, inputs=PREFIX + CO_PARTITIONED[0])).items():
            _in_flight[p] += futures
        for p, (key, envelope) in dead:
            _in_flight[p].append(await rejected_topic.send(key=key, value=envelope, partition=p, force=True))


def _write_back(p: int, pl: Pipeline) -> None:
    """Assign back what changed since the last write-back (a table value changed in
    place is lost on recovery), once however often a key changed since."""
    changed, removed, agents_changed, buckets = pl.drain_changes()
    fresh, applied = pl.drain_held()
    known, dumps, top = pl.ledger.customers, pickle.dumps, pickle.HIGHEST_PROTOCOL
    ids, taken = _ids[p], RecentIds.taken(fresh)
    for cid in changed:
        if cid in known:
            _put(customers, p, cid, dump_customer(known[cid], ids.parts(cid, known[cid], taken.get(cid))))
    oldest, segments = pl.oldest_held(), _segments[p]
    for key, value in segments.add(fresh, applied, oldest):
        _put(held_events, p, key, value)
    for key in segments.expired(oldest):
        _drop(held_events, p, key)
    for cid in removed:
        if cid not in known:
            ids.forget(cid)
            if cid in customers.data:
                _drop(customers, p, cid)
    for aid in agents_changed:
        _put(agents, p, aid, dumps(pl.desk.agents[aid], top))
    for who, period in buckets:
        _put(books, p, f"{p}|{who or ''}|{period}", dumps(dict(pl.book.stated[(who, period)]), top))
    if buckets:
        _months_touched[p].update(period[:7] for _, period in buckets)
    _epoch[p] = epoch = _epoch[p] + 1
    _unstored_ids[p].add(epoch, pl.drain_fresh_ids())
    _put(clocks, p, f"@{p}", dumps((pl.max_ts, pl.stats, pl.ledger.next_sweep, pl.input_max, _applied[p],
                                    epoch, pl.ids_from), top))


# Duplicates older than the in-memory horizon (two days of event time) are found in the
# store, as `replay` finds them: every applied id is stored before the transaction of the
# state that holds it commits, tagged with its partition and the write-back it came with
# (`_epoch`, kept in the state).  A restore forgets the ids stored with later write-backs
# (never committed: their events are read again, and must not be taken for duplicates).
# Ids not yet stored are looked up here first; a store that cannot be written keeps them
# here (`cspulse_event_ids_unstored`) and the stream goes on: a crash before they are
# stored loses them, and a duplicate of one of their events more than two days late would
# then count twice.
_epoch: dict[int, int] = {}                                # partition -> its state's last write-back
_unstored_ids: dict[int, UnstoredIds] = {}              # partition -> its ids not yet stored
# While the store cannot be written, at most this many ids wait (≈ 200 MB; at 2,000 events/s
# eight minutes, at a 20-agent shop's rate weeks); beyond it the oldest go, counted in
# `cspulse_event_ids_dropped_total`: a duplicate of their events more than two days late counts again.
IDS_UNSTORED_MAX = 1_000_000


def _bound_unstored_ids() -> None:
    total = sum(len(ids) for ids in _unstored_ids.values())
    if total <= IDS_UNSTORED_MAX:
        return
    # each partition keeps its share, its newest
    dropped = sum(ids.keep_newest(len(ids) * IDS_UNSTORED_MAX // total) for ids in _unstored_ids.values())
    metrics.ids_dropped.inc(dropped)
    log.warning("%d event ids waited for the store; the %d oldest were dropped unstored (a duplicate of "
                "their events more than two days late would count again)", total, dropped)


_lookup = None      # `repo.seen_lookup`, used by the loop's thread only


def _seen_before(p: int, event_id: str) -> bool:
    global _lookup
    if event_id in _unstored_ids.get(p, ()):
        return True
    try:
        if _lookup is None:
            _lookup = repo.seen_lookup(_engine())
        return _lookup(event_id)
    except Exception:
        if _lookup is not None:
            with contextlib.suppress(Exception):
                _lookup.close()
            _lookup = None          # (connected again at the next lookup)
        metrics.store_errors.inc()
        log.warning("looking up the old event id %s in the store failed: taken as not seen", event_id, exc_info=True)
        return False


def _remember_ids(chunks: list[tuple[int, int, dict[str, int]]]) -> None:
    with Session(_engine()) as session:
        for p, epoch, ids in chunks:
            repo.remember_ids(ids, session=session, partition=p, epoch=epoch)
        session.commit()


def _forget_uncommitted_ids(epochs: dict[int, int]) -> int:
    with Session(_engine()) as session:
        n = sum(repo.forget_ids_after(p, e, session=session) for p, e in epochs.items())
        session.commit()
        return n


async def _store_ids() -> None:
    """Store the ids written back since the last commit (before it: see `_epoch`)."""
    taken = {p: list(ids.chunks) for p, ids in _unstored_ids.items() if ids.chunks}
    if taken:
        try:
            await asyncio.to_thread(_remember_ids, [(p, epoch, chunk) for p, chunks in taken.items()
                                                    for epoch, chunk in chunks])
        except Exception:
            metrics.store_errors.inc()
            log.exception("storing the event ids of %d write-backs failed; kept, and tried again at the next "
                          "commit", sum(map(len, taken.values())))
            _bound_unstored_ids()
        else:
            for p, chunks in taken.items():
                if p in _unstored_ids:      # (a restore since made it afresh: nothing of these is in it)
                    _unstored_ids[p].stored(chunks)
    metrics.ids_unstored.set(sum(len(ids) for ids in _unstored_ids.values()))


# The input offsets each partition's state includes, written with the state (same
# transaction), so the state says where it stands, and every event is checked against
# it: an offset at or below it is a re-delivery (skipped), one past the next expected
# offset leaves a gap, which is read from Kafka directly (Faust's own consumer drops
# offsets below those it has delivered, so seeking it back does not work) and applied
# first.  Gaps come from Faust, in two ways measured here:
# - after a rebalance Faust can hand a worker a partition whose committed offsets are
#   ahead of its changelog: the joiner reads the changelog while the previous owner's
#   last transaction is still open, then fetches the offsets that transaction commits
#   (a worker joining mid-backlog restored an empty state and started at 45% of its
#   partitions; those events were lost);
# - right after a restart Faust resumes fetching before it seeks to the committed
#   offsets, and messages fetched in between can be skipped on their way to the agent
#   (chat partitions jumping from offset 2787 to 2824 in the SIGKILL test: 36 events
#   of each lost, and Faust's offset commits for those partitions stuck at the gap until
#   their transactions timed out).
# A gap read here is also handed to Faust's consumer as one (`_add_gap`, as its fetch
# loop does for offsets it saw skipped), so its commits move past it.
_applied: dict[int, dict[str, int]] = {}     # partition -> topic -> last offset in its state
_UNKNOWN = -2                                  # a state from before offsets were kept


async def _in_step(p: int, share: list) -> list:
    """The records of a partition's share the state still needs: without re-deliveries it
    already has, and with any gap before a record filled in."""
    applied = _applied[p]
    kept: dict[str, int] = {}       # topic -> last offset kept from this share
    out = []
    for r in share:
        last = kept.get(r.topic, applied.get(r.topic, -1))
        if last == _UNKNOWN:
            out.append(r)
            continue
        if r.offset <= last:
            continue                        # already in the state: a re-delivery
        if r.offset > last + 1:
            log.warning("%s:%d delivered offset %d but its state stands at %d: reading the gap from Kafka",
                        r.topic, p, r.offset, last)
            out += await _read_gap(r.topic, p, last + 1, r.offset)
            metrics.gaps_reread.inc()
        kept[r.topic] = r.offset
        out.append(r)
    return out


async def _read_gap(topic: str, p: int, start: int, end: int) -> list:
    """Records [start, end) of one partition."""
    from aiokafka import TopicPartition
    consumer = _plain_consumer("cspulse-gap")
    await consumer.start()
    out = []
    try:
        tp = TopicPartition(topic, p)
        consumer.assign([tp])
        consumer.seek(tp, start)
        while not out or out[-1].offset < end - 1:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            records = batch.get(tp, [])
            if not records:
                if await consumer.position(tp) >= end:
                    break           # offsets with no message (transaction markers) up to the end
                continue
            for r in records:
                if r.offset >= end:
                    break
                out.append(r)
    finally:
        await consumer.stop()
    return out


def _plain_consumer(client_id: str):
    """A consumer outside Faust's group (it commits nothing), reading what is committed."""
    from aiokafka import AIOKafkaConsumer
    return AIOKafkaConsumer(bootstrap_servers=SETTINGS.kafka, enable_auto_commit=False,
                            isolation_level="read_committed", auto_offset_reset="earliest", client_id=client_id)


def _idle_inputs(p: int, wall: float) -> set[str]:
    """Partition p's customer inputs read to their end and not heard from for `IDLE_S`: they
    no longer hold its stream time back."""
    return {t for t in ORDERED_INPUTS
            if (p, t) in _read_to_end and wall - _last_heard.setdefault((p, t), wall) > IDLE_S}


def _feed(p: int, batch: list) -> list[tuple[bytes | None, bytes]]:
    """Feed one partition's share of a batch (aiokafka records) to its pipeline; return the
    dead letters.  (What changed is written back after the batch or at the commit: `_unwritten`.)"""
    pl = pipelines[p]
    wall = time.monotonic()
    last = {r.topic: r.offset for r in batch}      # each topic's last offset in the share
    _applied[p].update(last)
    for topic in last:
        _last_heard[(p, topic)] = wall
    idle = _idle_inputs(p, wall)
    dead, before = [], tally(pl.stats)
    for r in batch:
        bad = pl.feed_line(r.value, r.topic, idle)
        if bad is not None:
            envelope = {"reason": bad.reason, "source": f"{r.topic}:{p}:{r.offset}",
                        "event_id": bad.event_id, "raw": r.value.decode("utf-8", "replace")}
            dead.append((r.key, json.dumps(envelope, ensure_ascii=False).encode()))
    metrics.count(before, tally(pl.stats))
    return dead


@app.agent(inputs)
async def subscribe(stream):
    """Subscribes the app to the inputs (Faust's assignment, table recovery and
    transactional producers follow the subscription); `read_inputs` reads them.
    Faust is kept from fetching them (`keep_faust_off`): anything it fetched before
    that took hold is dropped here, and read again by the reader from the state's offsets."""
    dropped = 0
    async for _ in stream.events():
        dropped += 1
        if dropped == 1 or dropped % 10_000 == 0:
            log.warning("Faust delivered %d input messages itself; dropped (the reader reads them)", dropped)


async def _process(batch: list) -> None:
    """One batch of input records: fed to the partitions' pipelines and written back (or
    left for the commit, in a backlog: `_unwritten`), then the alerts of what it changed."""
    global _last_full_batch
    started = time.perf_counter()
    shares: dict[int, list] = defaultdict(list)
    for r in batch:
        shares[r.partition].append(r)
    newest = max(r.timestamp for r in batch) / 1000
    for p, share in shares.items():       # (every partition read has its pipeline: `_follow_assignment`)
        share = await _in_step(p, share)
        if share:
            _dead_letters.extend((p, letter) for letter in _feed(p, share))
            _unwritten.add(p)
    if len(batch) >= BATCH:     # a backlog: written back at the commit, and the live refresh spaced out
        _last_full_batch = time.monotonic()
    else:                       # live: written back now
        await _write_back_unwritten()
    # Alerts about single events without waiting for the allowed lateness: the
    # look-ahead of the customers this batch changed gives their notes now.  A partition
    # catching up on events all older than the allowed lateness (a backlog) leaves them
    # to the next refresh's view, which looks ahead at every customer changed since the
    # last one at most a fifth of the time: the alerts of events that old come a second
    # or so later, and a backlog is read faster (a look-ahead per batch took a fifth of
    # the worker's time there, the customers' own events applied for real moments later).
    if _alerts_loaded:
        _judge_batch(shares, now_us())
        await _send_alerts()
    else:
        _bound_waiting_notes(shares)
    metrics.batch.observe(time.perf_counter() - started)
    metrics.lag.set(max(0.0, time.time() - newest))


# Notes wait in the pipelines for the rules until the stored alerts are read (fire once
# per key across restarts); while the store cannot be read they are kept up to this many
# a partition, the newest (an alert about events older than that comes too late to
# help): ≈ 10 MB a partition; at 2,000 events/s over 8 partitions, 80 s of notes, at a
# 20-agent shop's rate hours.
NOTES_WAITING = 20_000


def _bound_waiting_notes(partitions) -> None:
    for p in partitions:
        notes = pipelines[p].ledger.notes
        if notes is not None and len(notes) > NOTES_WAITING:
            drop = len(notes) - NOTES_WAITING
            del notes[:drop]
            metrics.notes_dropped.inc(drop)


def _judge_batch(partitions, now: int) -> None:
    """The look-ahead of the customers a batch changed in these partitions (those not in a
    backlog, above), then the rules over the pipelines' new notes."""
    wall = time.monotonic()
    for p in partitions:
        pl = pipelines[p]
        if _reads_now(pl, _idle_inputs(p, wall), now):
            pl.look_ahead_changed(_ahead_time(pl, now))
    alerting.step(pipelines, None, now)


def _reads_now(pl: Pipeline, idle, now: int) -> bool:
    """Whether a partition reads events of now, not a backlog: the newest event of its
    slowest customer input still being read within the allowed lateness of now (idle
    inputs left out, as in the pipeline's stream time; unlike there, an input not heard
    from at all holds nothing back here: nothing of it can be behind).  Its newest event alone misled when
    one input was read ahead of the others: a backlog whose last orders (a week of
    refunds past its last day) were read while its chat was weeks behind was looked
    ahead at each batch, and read 3-4 times slower (bench/worker.py --days 75)."""
    tops = pl.input_max
    heard = [tops[t] for t in ORDERED_INPUTS if t in tops and t not in idle]
    slowest = min(heard) if heard else pl.max_ts
    return slowest is not None and slowest >= now - pl.lateness


_reader: InputReader | None = None
_batch_lock = asyncio.Lock()       # a rebalance waits for the batch in hand (`_forget_partitions`)
_last_commit = 0.0
_committed: dict[int, dict[str, int]] = {}    # partition -> topic -> last offset committed


@app.task
async def read_inputs() -> None:
    """Read the inputs in batches (`streams/inputs.py`) and process them, committing the
    partitions' transactions every `broker_commit_interval`."""
    global _reader
    reader = _reader = InputReader(_plain_consumer("cspulse-inputs"))
    await reader.start()
    while not app.should_stop:
        if app.rebalancing or app.tables.recovery.in_recovery or not app.tables.recovery.completed.is_set():
            await asyncio.sleep(0.05)
            continue
        try:
            async with _batch_lock:
                batch = []
                if not app.rebalancing and await _follow_assignment(reader):
                    batch = await reader.take(BATCH, BATCH_WITHIN_S)
                    if batch and app.rebalancing:
                        # read past, not processed: read again from the states after the rebalance
                        batch = []
                        reader.forget()
                    elif batch:
                        await _process(batch)
                if not app.rebalancing:
                    _pace(reader)
                    await _commit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if app.should_stop or not reader.started:
                return                  # the worker is stopping (and stopped the reader)
            # Half a batch may be in the tables and not in their changelogs: only a restart
            # from the changelogs is exact again.  (Faust does the same with a fenced producer.)
            log.exception("processing a batch of the inputs failed; stopping the worker, which restarts "
                          "from its last committed state")
            await app.crash(exc)
            return
        if not batch:
            await asyncio.sleep(0.05 if not reader.assigned() else 0)


def _pace(reader: InputReader) -> None:
    """Stop reading the customer inputs of each partition that have run ahead of its
    slowest one in event time (`streams/inputs.py`, `inputs_ahead`), read them again
    once it caught up."""
    from aiokafka import TopicPartition
    ahead = set()
    for p, pl in pipelines.items():
        tps = {t: TopicPartition(t, p) for t in ORDERED_INPUTS}
        if not all(tp in reader.assigned() for tp in tps.values()):
            continue
        waiting = {t for t, tp in tps.items() if reader.left_to_read(tp)}
        paused = {t for t, tp in tps.items() if tp in reader.paused}
        tops = {t: ts for t, ts in pl.input_max.items() if t in tps}
        ahead.update(tps[t] for t in inputs_ahead(tops, waiting, paused, pl.lateness))
    reader.pace(ahead)
    metrics.paused.set(len(reader.paused))


async def _follow_assignment(reader: InputReader) -> bool:
    """Read the input partitions Faust assigned this worker, each from the first offset its
    restored state does not hold; return whether there are any.  Every assigned
    partition's pipeline is rebuilt here, not only those with new events: a partition
    whose backlog was all read before a rebalance gets no more, and its book would
    otherwise never be stored again (measured once: a second worker joining mid-stream
    left two partitions' KPIs out of the store)."""
    from aiokafka import TopicPartition
    wanted = {TopicPartition(tp.topic, tp.partition) for tp in _assigned_inputs(ALL_INPUTS)}
    if wanted == reader.assigned():
        return bool(wanted)
    positions: dict = {}
    unknown = []
    await _recover(sorted({tp.partition for tp in wanted} - set(pipelines)))
    for tp in sorted(wanted):
        last = _applied[tp.partition].get(tp.topic)
        if last == _UNKNOWN:
            unknown.append(tp)
        positions[tp] = None if last is None else last + 1
    for tp, offset in (await _group_offsets(unknown)).items():
        positions[tp] = offset
    await reader.assign(positions)
    _committed.clear()
    _committed.update({p: dict(_applied[p]) for p in {tp.partition for tp in wanted}})
    log.info("reading %d input partitions from their states' offsets", len(wanted))
    return bool(wanted)


async def _group_offsets(tps: list) -> dict:
    """The group's committed offsets of partitions whose state does not say which offsets it
    holds (written by a version that did not keep them)."""
    if not tps:
        return {}
    from aiokafka import AIOKafkaConsumer
    consumer = AIOKafkaConsumer(bootstrap_servers=SETTINGS.kafka, group_id=app.conf.id, enable_auto_commit=False,
                                client_id="cspulse-offsets")
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


async def _commit(at_once: bool = False) -> None:
    """Commit the transactions of the partitions read since the last commit: what changed
    in their states (written back first if it was not yet: `_unwritten`), their dead
    letters and the offsets their states now hold; every `broker_commit_interval`, or
    `at_once` (partitions are revoked)."""
    global _last_commit
    now = time.monotonic()
    if now - _last_commit < app.conf.broker_commit_interval and not at_once:
        return
    from aiokafka import TopicPartition as TP      # (aiokafka checks the type of the offsets' keys)
    moved = {p: {TP(t, p): o + 1 for t, o in _applied[p].items() if o >= 0 and _committed.get(p, {}).get(t) != o}
             for p in list(_applied)}
    moved = {p: offsets for p, offsets in moved.items() if offsets}
    if not moved:
        return          # (the interval starts at the next commit: the first batch commits at once)
    _last_commit = now
    if _unwritten:
        await _write_back_unwritten()
    await _published()
    await _store_ids()

    async def commit(p: int, offsets: dict) -> None:
        # every send of the transaction written, or no commit (`changelog.settle` says why)
        await changelog.settle(_in_flight.pop(p, []), p)
        await app.consumer.transactions.commit(offsets)

    # one partition's transaction does not wait for another's (Faust commits them one by one)
    await asyncio.gather(*(commit(p, offsets) for p, offsets in moved.items()))
    for p, offsets in moved.items():
        _committed.setdefault(p, {}).update({tp.topic: o - 1 for tp, o in offsets.items()})


_stalls = StallWatch(after_s=60.0)
_stall_reader = None     # a plain consumer for end offsets: Faust's come from fetches, and a stalled partition has none


@app.timer(10.0)
async def watch_for_stalls() -> None:
    """Count, log and seek input partitions that stopped moving with messages waiting
    (`streams/stalls.py`).  During a large backlog an input can lag behind the others
    for a while; a minute without any progress while its messages wait is what was
    seen when Faust stopped fetching one, and a seek is harmless to one that was only
    slow (what it re-reads is skipped as re-delivered)."""
    global _stall_reader
    assigned = _assigned_inputs(ALL_INPUTS)
    if not assigned or app.rebalancing:
        return
    try:
        if _stall_reader is None:
            reader = _plain_consumer("cspulse-stalls")
            await reader.start()
            _stall_reader = reader
        # Faust's TP and aiokafka's are the same pair; bounded, or a hung request would
        # hold this timer (Faust waits for a timer's last run) and no stall would be seen again
        ends = await asyncio.wait_for(_stall_reader.end_offsets(assigned), 15)
    except Exception:
        log.warning("reading the inputs' end offsets failed; the stall check tries again", exc_info=True)
        return
    paused = _reader.paused if _reader is not None else frozenset()   # not read on purpose (`_pace`): not watched
    applied = {tp: _applied.get(tp.partition, {}).get(tp.topic, -1) for tp in assigned if tp not in paused}
    stalled = _stalls.check({tp: v for tp, v in applied.items() if v != _UNKNOWN}, ends, time.monotonic())
    for tp in stalled:
        log.error("%s:%d has messages up to offset %d waiting but has stayed at offset %d for %.0f s or more: "
                  "seeking it to offset %d; if this repeats, restart this worker",
                  tp.topic, tp.partition, ends[tp] - 1, applied[tp], _stalls.after_s, applied[tp] + 1)
        # Seen stalled while Faust counted it active, not paused, not buffered: so restart
        # its fetching at the first offset the state lacks (what is before it is skipped
        # as re-delivered, see `_in_step`).
        try:
            if _reader is not None and tp in _reader.assigned():
                _reader.seek(tp, applied[tp] + 1)
        except Exception:
            log.exception("seeking %s:%d failed", tp.topic, tp.partition)
    metrics.stalled.set(len(stalled))


async def _forget_partitions(app, partitions, *, commit: bool = False, **kwargs) -> None:
    """After any rebalance a partition is rebuilt from its changelogs (`_recover`) and read
    from the offsets its state holds; no input counts as idle until it is seen read to its
    end again.  The batch in hand is finished first.  (Faust is kept off the inputs from
    the first assignment on: Faust's fetching starts before the app's tasks.)

    With `commit` (partitions are about to be revoked), every partition's open transaction
    is committed first.  Faust commits nothing then (it has no input offsets of its own),
    and a transaction left open across a rebalance goes wrong both ways: a partition
    handed on loses it (the next owner's producer aborts it), and a partition kept is
    rebuilt from its committed changelogs while the same transaction goes on, committing
    the writes from before the rebalance next to those of the events read again after it.
    (A commit that fails here crashes the worker, as Faust does for a fenced producer; it
    restarts from its last committed state.)"""
    keep_faust_off(app.consumer, ALL_INPUTS)
    async with _batch_lock:
        await _published()
        if commit:
            await _commit(at_once=True)
        _forget_all()


async def _commit_before_rebalance(app, revoked, **kwargs) -> None:
    await _forget_partitions(app, revoked, commit=True)


def _forget_all() -> None:
    if _reader is not None:
        _reader.forget()
    _dead_letters.clear()       # (committed before a revoke; otherwise read again with their events)
    _in_flight.clear()
    _unwritten.clear()
    pipelines.clear()
    _segments.clear()
    _ids.clear()
    _read_to_end.clear()
    _last_heard.clear()
    _applied.clear()
    _epoch.clear()
    _unstored_ids.clear()
    _stalls.forget()
    _months_touched.clear()
    _ahead_months.clear()


async def _check_read_to_end() -> bool:
    """Note which inputs this worker has read to their end (processed offset at the high
    watermark); return whether all of them are, reviews too (none held: not)."""
    assigned = _assigned_inputs(ALL_INPUTS)
    seen = {(tp.partition, tp.topic) for tp in assigned if await _at_end(tp)}
    _read_to_end.clear()
    _read_to_end.update(seen)
    return bool(assigned) and len(seen) == len(assigned)


async def _at_end(tp) -> bool:
    from aiokafka import TopicPartition
    tp = TopicPartition(tp.topic, tp.partition)
    end = _reader.highwater(tp) if _reader is not None else None
    if end is None:
        return False
    if end == 0:
        return True         # an empty partition
    last = _applied.get(tp.partition, {}).get(tp.topic, _UNKNOWN)
    if last == _UNKNOWN:   # not in a state restored here: compare the read position
        # ... but never wait for it: the consumer answers only once the partition's
        # position is known, and during or after a rebalance that can take forever
        # (measured: a worker joining mid-stream hung its store tick on it, and its
        # partitions' KPIs were never stored again)
        try:
            position = await asyncio.wait_for(_reader.position(tp), 0.2)
        except Exception:
            return False
        return position is not None and position >= end
    return last + 1 >= end


app.on_partitions_revoked.connect(_commit_before_rebalance)
app.on_partitions_assigned.connect(_forget_partitions)


def _assigned_inputs(topics: frozenset = ORDERED_INPUTS) -> list:
    """The partitions of these inputs (by default the customer-keyed ones) this worker holds
    (none before it starts)."""
    try:
        assigned = app.consumer.assignment()
    except Exception:   # not started yet
        return []
    return [tp for tp in assigned if tp.topic in topics]


def _as_of(pl: Pipeline, now: int, month: str | None = None) -> KpiBook:
    return pl.view(_ahead_time(pl, now), month)


def _ahead_time(pl: Pipeline, now: int) -> int:
    """The time to look ahead to: not before the newest event (a producer's clock may run
    ahead of ours), nor before the pipeline's latest look-ahead.  A look-ahead as of an
    earlier time starts every customer's over, and a refresh that takes its `now` before
    giving the loop turns, or a clock behind the events', met batches that had looked
    further (measured: every customer of a partition looked at afresh, 2,400-2,700 in
    0.1-0.3 s, the whole worker's loop held 1.3 s and an alert 1.5 s late)."""
    return max(now, pl.max_ts or 0, pl.looked_ahead_until)


# Which months of a partition's book the next store write views (the rest stands as
# stored): those whose buckets changed since (`_write_back`, and the book's changes not
# yet written back), those the look-ahead adds facts to now or did at the last view,
# and the month of now.  A partition not viewed since it was restored has all its months
# viewed.  Viewing, writing and reading every month at each store write cost a time
# growing with the history (0.9 s of CPU every 10 s at 75 days of 20 agents).
_months_touched: defaultdict[int, set[str]] = defaultdict(set)
_ahead_months: dict[int, set[str]] = {}      # partition -> months of its look-ahead at its last view


def _partition_view(p: int, pl: Pipeline, now: int, final: bool = False) -> dict[str, dict]:
    """Partition p's months as of now that may differ from what the store holds:
    {month: {"who|period": counters}} (a month with no buckets left: empty).  In a
    backlog, the book as the stream has applied it (`_looks_ahead_now`); `final` (at
    shutdown): as of now whatever the partition reads."""
    looks_ahead = final or _looks_ahead_now(p, pl, now)
    ahead = _ahead_time(pl, now)
    touched = _months_touched.pop(p, set())
    if p in _ahead_months:
        months = touched | _ahead_months[p] | {period[:7] for _, period in pl.book.changed or ()}
    else:
        months = {period[:7] for _, period in pl.book.stated}
    months.add(_clock().day(ahead)[:7])
    books: dict[str, dict] = {}      # month -> a book holding its buckets (and maybe others')
    seen_ahead: set[str] = set()
    if looks_ahead:
        while todo := months - books.keys():
            month = min(todo)
            books[month] = pl.view(ahead, month).stated
            seen_ahead = pl.ahead_months()
            months |= seen_ahead
    else:
        books = dict.fromkeys(months, pl.book.stated)
    _ahead_months[p] = seen_ahead
    return {month: {f"{who or ''}|{period}": dict(b) for (who, period), b in stated.items() if period.startswith(month)}
            for month, stated in books.items()}


def _looks_ahead_now(p: int, pl: Pipeline, now: int) -> bool:
    """Whether the store's view of partition p is as of now (held events applied and due
    timers fired on copies, as `replay --until now` gives): when it reads events of now
    (`_reads_now`) or has read every input to its end.  In a backlog, not: there the
    look-ahead to now of every customer the backlog changed took a fifth of the worker's
    time (py-spy, `bench/worker.py --days 75`: 20-22% of samples at 0.4M and 1.05M events
    read), for KPIs the backlog makes stale within seconds."""
    return _reads_now(pl, _idle_inputs(p, time.monotonic()), now) or \
        all((p, t) in _read_to_end for t in ORDERED_INPUTS)


async def _snapshot_views() -> tuple[dict[int, dict], tuple[list, list, list]]:
    """Each local partition's book as of now, and the goals, reviews and post-close
    adjustments of its agents; the loop gets a turn between partitions, so batches (and
    alerts) do not wait for all."""
    now, views, desks = round(time.time() * US), {}, _unstored_desk()
    for p, pl in list(pipelines.items()):
        if pipelines.get(p) is pl:      # still ours after the last turn
            _snapshot_one(p, pl, now, views, desks)
        await asyncio.sleep(0)
    return views, desks


def _snapshot_views_now() -> tuple[dict[int, dict], tuple[list, list, list]]:
    """The same, in one go and as of now (at shutdown)."""
    now, views, desks = round(time.time() * US), {}, _unstored_desk()
    for p, pl in list(pipelines.items()):
        _snapshot_one(p, pl, now, views, desks, final=True)
    return views, desks


def _snapshot_one(p: int, pl: Pipeline, now: int, views: dict, desks: tuple[list, list, list],
                  final: bool = False) -> None:
    views[p] = _partition_view(p, pl, now, final)
    desks[0].extend(repo.goal_rows(pl.desk.agents))
    desks[1].extend(repo.review_rows(pl.desk.agents))
    desks[2].extend(pl.post_close)
    pl.post_close = []


_unstored_adjustments: list[dict] = []    # drained from the pipelines, not yet in the store


def _unstored_desk() -> tuple[list, list, list]:
    adjustments = list(_unstored_adjustments)
    _unstored_adjustments.clear()
    return [], [], adjustments


def _store(views: dict[int, dict], desks: tuple[list, list, list], alerts: tuple[list, list]) -> dict:
    """Write this worker's partitions' months that changed, the KPIs of every month any
    partition changed (all partitions' months summed), the goals, reviews and
    post-close adjustments, and the alerts changed since the last write; return the
    partition months read that changed since the last store write, for `_months_read`
    once committed (and note the months closed, for the pipelines)."""
    global _closed_months
    with Session(_engine()) as session:
        repo.one_writer_at_a_time(session)
        repo.write_alerts(alerts[0], session=session)
        repo.delete_alerts(alerts[1], session=session)
        fresh = repo.store_partition_books(views, _months_read, session=session)   # (only what changed)
        repo.write_goals(desks[0], session=session)
        repo.write_reviews(desks[1], session=session)
        repo.add_adjustments(desks[2], session=session)
        _closed_months = frozenset(repo.closed_months(session=session))
        session.commit()
        return fresh


# Every partition's months as last read from the store: (partition, month) -> (digest,
# {(who, period): counters}).  Read again only where the digest changed, after the
# store write that read them committed: a write that failed leaves them to be read
# (and their KPIs recomputed) at the next.  Another worker's write committed after
# this one read shows a new digest at the next read, so the KPIs it left are recomputed.
_months_read: dict[tuple[int, str], tuple[str, dict]] = {}


_engine_lock = threading.Lock()


@functools.cache
def _connect():
    return repo.connect(SETTINGS.database_url)


def _engine():
    # timers call this from worker threads at the same moment: connect (and create the schema) once
    with _engine_lock:
        return _connect()


@app.timer(SETTINGS.store_interval_s)
async def store_kpis() -> None:
    # Also with no partition of its own: it still reads the others' books for /metrics.
    # Which inputs are read to their end, as of now (before the snapshot: all it read is in
    # it): a partition read to its end is viewed as of now (`_looks_ahead_now`), and the
    # month is closed on such views only.
    caught_up = await _check_read_to_end() and 0 in pipelines
    views, desks = await _snapshot_views()
    alerts = alerting.take_unstored()
    try:
        _months_read.update(await asyncio.to_thread(_store, views, desks, alerts))
    except Exception:   # a busy or unreachable store must not stop the stream: next tick retries
        for p in views:
            _ahead_months.pop(p, None)      # all its months viewed again
        for alert in alerts[0]:
            alerting.unstored.setdefault(alert.key, alert)
        alerting.retracted.update(k for k in alerts[1] if k not in alerting.unstored)
        _unstored_adjustments.extend(desks[2])
        metrics.store_errors.inc()
        log.exception("writing KPIs to the store failed; retrying in %.0f s", SETTINGS.store_interval_s)
        return
    for pl in list(pipelines.values()):
        pl.closed_months = _closed_months
    if 0 in pipelines:          # one judge: the worker holding partition 0
        await _month_end(caught_up)


_closed_months: frozenset = frozenset()


async def _month_end(caught_up: bool) -> None:
    """Close the previous month when its time comes (the KPIs were just stored, and this
    worker is not catching up a backlog), publish the consequences of every close not
    yet published, and show the improvement plans' states to the rules."""
    now = datetime.now(timezone.utc)
    try:
        if caught_up:
            await asyncio.to_thread(closing.close_if_due, _engine(), SETTINGS, now)
        plans = await asyncio.to_thread(plan_states, _engine(), now_us())
    except Exception:
        metrics.store_errors.inc()
        log.exception("the month-end check failed; retrying in %.0f s", SETTINGS.store_interval_s)
        return
    if await _alerts_ready():
        at = now_us()
        alerting.observe([p.note(at) for p in plans])
        await _send(ALERTS, alerting.outgoing)
    try:
        for period, revision, messages in await asyncio.to_thread(closing.unpublished, _engine()):
            queue = [(key, value, key_hash(key)) for key, value in messages]
            await _send(CONSEQUENCES, queue)
            if queue:                   # not sent: the next check tries again
                return
            await asyncio.to_thread(closing.mark_published, _engine(), period, revision)
            log.info("published %d consequences of %s (revision %d) to %s", len(messages), period, revision,
                     PREFIX + CONSEQUENCES)
    except Exception:
        metrics.store_errors.inc()
        log.exception("publishing month-end consequences failed; retrying in %.0f s", SETTINGS.store_interval_s)


@functools.cache
def _clock() -> ShopClock:
    return ShopClock(SETTINGS.params())


async def live_book(now: int) -> KpiBook:
    """This month's book of the whole shop: this worker's partitions as of now (the loop
    gets a turn between them), the others' as last stored (by the workers that own them).
    A partition in a backlog (`_looks_ahead_now`) gives its book as applied, as to the
    store: its look-ahead to now copied every customer the backlog changed (py-spy,
    `bench/worker.py --days 75`: 7% of samples at 0.4M events read, 10% at 2.0M), and fired
    timers of customers whose next events were still unread (a wait "open" for weeks)."""
    month = _clock().day(now)[:7]
    book = KpiBook()
    for p, pl in list(pipelines.items()):
        if pipelines.get(p) is pl:
            book.add_buckets((_as_of(pl, now, month) if _looks_ahead_now(p, pl, now) else pl.book.copy(month)).stated)
        await asyncio.sleep(0)
    for (p, m), (_, buckets) in list(_months_read.items()):
        if m == month and p not in pipelines:
            book.add_buckets(buckets)
    return book


_last_refresh = (0.0, 0.0)    # when the last refresh started, and how long it took
_last_full_batch = -1e9      # when the reader last got a full batch (`BATCH` records: a backlog)


@app.timer(SETTINGS.metrics_interval_s)
async def refresh_live_kpis() -> None:
    # While a backlog streams in, every customer changes between refreshes and a refresh
    # costs more: space them so they take at most a fifth of the loop's time, a tenth
    # while the reader gets full batches (a backlog: its KPIs are behind anyway, and it
    # is read sooner; a live load, even a heavy one, comes in batches of 100 ms).
    global _last_refresh
    await _check_read_to_end()
    started = time.monotonic()
    share = 10 if started - _last_full_batch < 1.0 else 5     # (judged now: a backlog's end is seen at once)
    if started < _last_refresh[0] + share * _last_refresh[1]:
        return
    now = now_us()
    book = await live_book(now)
    metrics.kpis.snapshot = book.windows(_clock().day(now))
    metrics.kpis_updated.set(time.time())
    if await _alerts_ready():
        # Rules over agents run on the worker holding partition 0 only: one judge per agent.
        alerting.step(pipelines, book if 0 in pipelines else None, now)
        await _send_alerts()
    _last_refresh = (started, time.monotonic() - started)
    _spare_the_collector(started)


FULL_COLLECTION_EVERY_S = 900
FULL_COLLECTION_SHARE = 0.001
_last_full_collection: tuple[float, float, int] | None = None   # (when, seconds it took, resident bytes after)


def _spare_the_collector(now: float) -> None:
    """Keep the cyclic garbage collector off the long-lived state.

    The state (customers, held events, books) is millions of objects that reference
    counting frees; a full collection scanning them stalls the event loop for up to
    a second (measured: the p99 of alert and KPI latency).  So what survived to a
    refresh is frozen, out of the collector's sight, and now and then it is thawed
    for one full collection, so cycles some library left behind still go: every 15
    minutes, or less often when one would take long, so that they hold the loop at
    most 0.1% of the time.  A full collection scans every object (≈ 0.7 µs each
    here): seconds for a heap of gigabytes (measured: 6.8 s at 6 GB), so its length
    is foreseen from the last one's, scaled by how much the resident memory grew
    since.  They found 36 to 15,219 unreachable objects.  `cspulse_full_gc_seconds`
    shows each.  (aiokafka's fetched record sets would wait for one too, with their
    bytes, had `streams/fetch_cycles.py` not broken their cycle.)"""
    global _last_full_collection
    if _last_full_collection is not None:
        when, took, heap = _last_full_collection
        # (the growth read from the resident memory: `gc.get_freeze_count()` walks every
        # frozen object, and called at each refresh it took half the worker's time)
        if now - when < FULL_COLLECTION_EVERY_S or \
                now - when < took * max(1.0, _resident_bytes() / heap) / FULL_COLLECTION_SHARE:
            gc.freeze()
            return
    gc.unfreeze()
    started = time.perf_counter()
    freed = gc.collect()
    took = time.perf_counter() - started
    metrics.full_gc.observe(took)
    gc.freeze()
    _last_full_collection = (now, took, _resident_bytes())
    log.info("full garbage collection: %d unreachable objects freed, the loop held %.2f s", freed, took)


def _resident_bytes() -> int:
    """The worker's resident memory (what a full collection scans grows with it)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_alerts_loaded = False


async def _alerts_ready() -> bool:
    """Continue the alerts stored before a restart (fire once per key) before judging any."""
    global _alerts_loaded
    if not _alerts_loaded:
        try:
            alerting.load(await asyncio.to_thread(_stored_alerts), now_us())
        except Exception:   # the store is busy or down: the notes wait in the pipelines
            metrics.store_errors.inc()
            log.exception("reading the stored alerts failed; alerts wait until it works")
            return False
        _alerts_loaded = True
    return True


def _stored_alerts():
    with Session(_engine()) as session:
        return repo.read_alerts(session=session)


_alerts_producer = None


@app.task
async def _watch_the_loop() -> None:
    """Measure the event loop's stalls: a tick that should come every 100 ms, and how late it came."""
    tick = 0.1
    expected = time.monotonic() + tick
    while not app.should_stop:
        await asyncio.sleep(max(0.0, expected - time.monotonic()))
        now = time.monotonic()
        metrics.loop_lag.observe(max(0.0, now - expected))
        expected = max(expected, now) + tick


async def _send_alerts() -> None:
    alerting.take_answers()
    await _send(ALERTS, alerting.outgoing)


def _answers_came() -> None:
    """The rules process answered (the loop watches its pipe): its alerts go out at once,
    not with the next batch (a live load's batches come every 100 ms)."""
    global _answers_sent
    try:
        alerting.answers_came()
    except (EOFError, OSError) as exc:
        asyncio.get_running_loop().remove_reader(alerting.fileno())
        log.error("the rules process is gone (%r): stopping the worker, which restarts from its last "
                  "commit", exc)
        asyncio.ensure_future(app.crash(exc))
        return
    if alerting.outgoing and (_answers_sent is None or _answers_sent.done()):
        _answers_sent = asyncio.ensure_future(_send_alerts())


_answers_sent: asyncio.Future | None = None


async def _send(topic: str, queue: list[tuple[bytes, bytes, int]]) -> None:
    """cs.alerts or cs.consequences, at least once: what fails to go stays queued for
    the next try.  A message is (key, value, `key_hash(key)`): its partition is the hash's
    remainder (the alerts' keys are hashed in the rules process, off the worker's).

    A plain idempotent producer of its own, not the app's: the app's producers are
    transactional per input partition, and an alert keyed to a partition another
    worker owns would fence that worker's producer."""
    async with _sending[topic]:     # one send of a queue at a time: each takes what is queued when it starts
        await _send_queued(topic, queue)


_sending: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


async def _send_queued(topic: str, queue: list[tuple[bytes, bytes, int]]) -> None:
    global _alerts_producer
    if not queue:
        return
    taken = len(queue)      # (more may be queued while these are sent: they stay for the next send)
    try:
        if _alerts_producer is None:
            from aiokafka import AIOKafkaProducer
            producer = AIOKafkaProducer(bootstrap_servers=SETTINGS.kafka, enable_idempotence=True,
                                        client_id="cspulse-alerts")
            await producer.start()
            _alerts_producer = producer
        name = PREFIX + topic
        count = len(await _alerts_producer.partitions_for(name))
        shares: dict[int, list] = defaultdict(list)
        for key, value, hashed in queue[:taken]:    # every message has a key: its partition as aiokafka's gives it
            shares[hashed % count].append((key, value))
        sent = [future for p, records in shares.items()
                for future in await changelog.send_batches(_alerts_producer, name, p, records)]
        for future in sent:
            await future
    except Exception:
        metrics.alert_delivery_errors.inc()
        log.exception("sending %d messages to %s failed; retrying later", taken, PREFIX + topic)
        return
    del queue[:taken]


@app.on_before_shutdown.connect
def _store_on_shutdown(app, **kwargs) -> None:
    if pipelines:
        try:
            _store(*_snapshot_views_now(), alerting.take_unstored(wait=True))
        except Exception:
            log.exception("writing KPIs to the store at shutdown failed")
    alerting.close()


@app.on_before_shutdown.connect
async def _stop_alerts_producer(app, **kwargs) -> None:
    alerting.take_answers(wait=True)
    if _alerts_producer is not None or alerting.outgoing:
        await _send_alerts()      # (unpublished consequences wait in the store for the next start)
    if _alerts_producer is not None:
        await _alerts_producer.stop()
    if _stall_reader is not None:
        await _stall_reader.stop()
    if _reader is not None:
        await _reader.stop()
