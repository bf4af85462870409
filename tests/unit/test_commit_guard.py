"""`whole_batch` against Faust's own `Consumer.commit`: a commit asked for while a
batch is being sent waits for it and is skipped; one asked for after it runs; a
batch waits for a commit already running."""

import asyncio
from types import SimpleNamespace

from faust.transport.consumer import Consumer

from streams.commit_guard import whole_batch


class FaustCommit:
    """Faust's `Consumer.commit` and its wait, over a recorded `force_commit`."""
    commit = Consumer.commit
    maybe_wait_for_commit_to_finish = Consumer.maybe_wait_for_commit_to_finish
    _commit_fut = None

    def __init__(self, log, commit_takes=0.0):
        self.app, self.loop = SimpleNamespace(client_only=False), asyncio.get_running_loop()
        self.log, self.commit_takes = log, commit_takes

    async def force_commit(self, topics=None, start_new_transaction=True):
        self.log.append("commit starts")
        await asyncio.sleep(self.commit_takes)
        self.log.append("commit ends")
        return True


async def _send_batch(consumer, log):
    async with whole_batch(consumer):
        log.append("batch starts")
        for _ in range(3):
            await asyncio.sleep(0.01)    # the producer yields: a commit gets its turn
        log.append("batch ends")


def test_a_commit_asked_for_during_a_batch_is_skipped_and_the_next_one_runs():
    async def scenario():
        log = []
        consumer = FaustCommit(log)
        batch = asyncio.create_task(_send_batch(consumer, log))
        await asyncio.sleep(0.005)
        during = await consumer.commit()     # waits for the batch, then does nothing
        log.append(f"commit during the batch returned {during}")
        await batch
        after = await consumer.commit()
        return log, after, consumer._commit_fut

    log, after, left = asyncio.run(scenario())
    assert log == ["batch starts", "batch ends", "commit during the batch returned False",
                   "commit starts", "commit ends"]
    assert after is True and left is None


def test_a_batch_waits_for_a_commit_already_running():
    async def scenario():
        log = []
        consumer = FaustCommit(log, commit_takes=0.05)
        commit = asyncio.create_task(consumer.commit())
        await asyncio.sleep(0.001)
        await _send_batch(consumer, log)
        return log, await commit

    log, committed = asyncio.run(scenario())
    assert log == ["commit starts", "commit ends", "batch starts", "batch ends"]
    assert committed is True


def test_the_hold_is_released_when_the_batch_fails():
    async def scenario():
        consumer = FaustCommit([])
        try:
            async with whole_batch(consumer):
                raise RuntimeError("the producer crashed")
        except RuntimeError:
            pass
        return consumer._commit_fut, await consumer.commit()

    left, committed = asyncio.run(scenario())
    assert left is None and committed is True
