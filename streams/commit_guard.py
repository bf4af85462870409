"""Whole batches in every Kafka transaction: no offset commit while one is being sent.

Faust commits (every `broker_commit_interval`, and while it waits for the streams
in a rebalance) whenever the event loop gets a turn, and the producer yields when
its batch buffer fills.  So a commit could land in the middle of the worker's
`_publish`: half a batch's changelog messages in a committed transaction, the rest
in the next one.  When that next transaction was aborted (its partition went to a
worker joining mid-stream, whose producer fences the old one), the joiner restored
customers that already held the batch's event ids next to books without their
facts, and the redelivered events were dropped as duplicates (measured: 5
responses of one day lost, in 1 of 4 trials of a second worker joining
mid-backlog, with no gap between state and offsets).  With whole batches in every
transaction, a restored partition is the state its `clocks` record describes, and
the worker's `_in_step` skips exactly what that state already holds.

Since the worker reads its inputs itself (`streams/inputs.py`) and commits the
partitions' transactions between batches (`streams/worker.py`, `_commit`), Faust
has no input offsets of its own to commit; the guard stays around each hand-over
for the input messages Faust may still deliver before it is kept off them.

Faust has no public way to hold its commits.  `whole_batch` takes the consumer's
own "a commit is running" future, which `Consumer.commit` waits for and then skips
(the next commit covers what it would have); a commit already running is waited
for first.  Written against faust-streaming 0.15; `tests/unit/test_commit_guard.py`
checks the behaviour of Faust's `Consumer.commit` this relies on.
"""

from __future__ import annotations

import asyncio
import contextlib


@contextlib.asynccontextmanager
async def whole_batch(consumer):
    """Hold the consumer's commits off for the duration of the block."""
    while (running := consumer._commit_fut) is not None:
        await asyncio.wait([running])
    held = consumer._commit_fut = asyncio.get_running_loop().create_future()
    try:
        yield
    finally:
        if consumer._commit_fut is held:
            consumer._commit_fut = None
        held.set_result(None)
