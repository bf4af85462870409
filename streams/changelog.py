"""Table changelog messages, handed straight to each partition's transactional producer.

The worker writes what a batch changed into its tables' changelogs itself (see
`streams/worker.py`, `_put`).  Sending each message through Faust's `Topic.send`
cost about 100 µs a message (a future, a sensor call and two lookups in Faust,
then aiokafka's `send`), and a batch that changes many customers at once (the
stream's clock jumping ahead frees thousands of them) held the next batch, and
its alerts, for a second (measured: 10,768 messages, 1.04 s).  Here a batch's
messages are grouped by topic and partition and appended to aiokafka batch
builders (`create_batch` / `send_batch`, aiokafka's public batch API), in the
transaction Faust keeps for that partition: the same producer, under the same
lock Faust's own `Producer.send` takes, so commits and aborts see them exactly
as they would have.

The transaction is the one of the input partition (Faust's transactional id
`{app id}-{topic group}-{partition}`, with the inputs' topic group): Faust's own
`TransactionManager.send` takes the group of the changelog topic instead, which
is the same group, except that a changelog topic created while the worker's
first assignment was being made is in none (measured once: a `KeyError` for
`clocks-changelog` on the first batch, the agent crashing on every batch after).

Faust has no public handle on its per-partition transactional producers; this
reads them from its aiokafka driver (faust-streaming 0.15, pinned), and raises
Faust's own `ProducerSendError` when a partition has none, as `Producer.send`
does.  Keys are encoded as the tables' `json` key serializer encodes them
(`tests/unit/test_changelog.py` checks this against Faust).  Faust's sensor no
longer counts these sends; `/metrics` has the worker's own batch figures.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict

from faust.exceptions import ProducerSendError


def encode_key(key: str) -> bytes:
    """A table key as Faust's `json` key serializer writes it."""
    return json.dumps(key).encode()


def by_partition(messages) -> dict[tuple[str, int], list[tuple[bytes, bytes | None]]]:
    """(topic, partition, key, value) messages, grouped by topic and partition, in order."""
    out: dict[tuple[str, int], list] = defaultdict(list)
    for topic, p, key, value in messages:
        out[(topic, p)].append((encode_key(key), value))
    return out


async def publish(app, messages, inputs: str) -> dict[int, list]:
    """Send (topic, partition, key, value) messages (value None: a deletion) in the open
    transactions that commit the offsets of partition p of `inputs` (an input topic's
    name); return once they are queued in the producers, with the futures of their
    batches by partition p (`settle` them before p's transaction commits)."""
    driver = app.producer       # Faust's aiokafka Producer: the one under `app.consumer.transactions`
    group = app.assignor.group_for_topic(inputs)
    sent: dict[int, list] = defaultdict(list)
    for (topic, p), records in by_partition(messages).items():
        tid = f"{app.conf.id}-{group}-{p}"
        producer = driver._transaction_producers.get(tid)
        if producer is None:
            raise ProducerSendError(f"No transaction producer found for : {tid}")
        async with driver._trn_locks[tid]:
            sent[p] += await send_batches(producer, topic, p, records)
    return sent


class ChangelogWriteFailed(RuntimeError):
    """A message of a partition's transaction was not written: the transaction must not commit."""


async def settle(futures, p: int) -> None:
    """Wait for the sends of partition p's transaction (batch futures, or Faust's message
    futures) and raise `ChangelogWriteFailed` if any failed: call it before the transaction
    commits.

    aiokafka's `commit_transaction` waits for the transaction's batches but commits
    whatever became of them: a batch failed (expired while its partition had no
    leader, or refused by the broker) is left out and the rest commit (Kafka's Java
    producer raises instead and commits nothing).  A partition's transaction is its
    customers, its held segments and its clock together: one of them left out gives a
    state that contradicts itself (seen once, a 75-day backlog through a broker that
    answered `NotEnoughReplicas` and changed its metadata: a restore found a customer
    holding 9 events and the held segments 10, and the worker could not start).
    `tests/integration/test_changelog_failure.py` shows aiokafka doing so on a real broker."""
    if not futures:
        return
    await asyncio.wait(futures)
    failed = [asyncio.CancelledError("send cancelled") if f.cancelled() else f.exception()
              for f in futures if f.cancelled() or f.exception() is not None]
    if failed:
        raise ChangelogWriteFailed(
            f"partition {p}: {len(failed)} of {len(futures)} sends of its transaction failed "
            f"({failed[0]!r}); its transaction is not committed: restart the worker, which resumes "
            "from the last committed state") from failed[0]


async def send_batches(producer, topic: str, p: int, records) -> list:
    """Append (key, value) records to aiokafka batches of one partition and send them (each
    batch closed: no `send` of anyone else's may join it); return the batches' futures
    (aiokafka's `send` per message is a coroutine and a future each, several times dearer)."""
    sent = []
    builder = producer.create_batch()
    for key, value in records:
        if builder.append(key=key, value=value, timestamp=None) is None:   # full (and closed)
            sent.append(await producer.send_batch(builder, topic, partition=p))
            builder = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:
                raise ProducerSendError(f"a {topic} message of {len(value or b'')} bytes exceeds "
                                        "the producer's batch size (PRODUCER_MAX_BATCH_SIZE)")
    if builder.record_count():
        builder.close()
        sent.append(await producer.send_batch(builder, topic, partition=p))
    return sent


class MissingPartitions(RuntimeError):
    """A changelog topic lacks a partition the worker holds."""


async def check_partitions(bootstrap: str, tps) -> None:
    """Raise `MissingPartitions`, saying what to do, if a topic lacks one of these partitions
    (reading it would wait for the partition's metadata until the request timed out: seen
    when a changelog had been made with one partition by a client asking for it first)."""
    from aiokafka.admin import AIOKafkaAdminClient
    topics = sorted({tp.topic for tp in tps})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: {p["partition"] for p in t["partitions"]} for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()
    for topic in topics:
        have = described.get(topic, set())
        lacking = sorted(tp.partition for tp in tps if tp.topic == topic and tp.partition not in have)
        if lacking:
            raise MissingPartitions(
                f"changelog topic {topic} has {len(have)} partition(s) and no partition {lacking}: it was made "
                "with another partition count than CSPULSE_PARTITIONS, or created by a client before the worker "
                "made it; the worker cannot restore from it (recreate the topics with one partition count)")


def decode_key(raw: bytes) -> str:
    """A table key as written by `encode_key`."""
    return json.loads(raw)


async def read_to_end(consumer, tps, within_s: float = 300.0) -> dict:
    """Every key's last value in these changelog partitions, read from their beginning to
    their committed end (the consumer reads `read_committed`; its end offsets are then the
    last stable offsets): {tp: {key: value}}, deleted keys left out.

    The worker restores its partitions from this rather than from the tables Faust
    recovered.  Faust's recovery takes a changelog's end from the last fetch of it, so
    after a rebalance it read the changelogs of the partitions a worker kept, and of
    those a joiner took over, as empty (`highwater -1` in its log while a read_committed
    `end_offsets` gave thousands of committed messages).  Called once the partitions'
    transactional producers are initialised (Faust does that on assignment), so any
    transaction a previous owner left open is aborted, and the end is final."""
    state: dict = {tp: {} for tp in tps}
    if not tps:
        return state
    consumer.assign(list(tps))
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(list(tps))
    left = {tp for tp in tps if ends[tp] > 0}
    deadline = time.monotonic() + within_s
    while left:
        if time.monotonic() > deadline:
            raise TimeoutError(f"changelogs not read to their end within {within_s:.0f} s: "
                               + ", ".join(f"{tp.topic}:{tp.partition}" for tp in sorted(left)))
        batch = await consumer.getmany(*left, timeout_ms=1000, max_records=10_000)
        for tp, records in batch.items():
            data = state[tp]
            for r in records:
                if r.offset >= ends[tp]:
                    break
                if r.value is None:
                    data.pop(decode_key(r.key), None)
                else:
                    data[decode_key(r.key)] = r.value
        for tp in list(left):
            if await consumer.position(tp) >= ends[tp]:
                left.discard(tp)      # (offsets past the last message are transaction markers)
    return state
