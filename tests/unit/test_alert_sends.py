"""cs.alerts is sent from two places (after a batch, and as the rules process answers): a
send takes what is queued when it starts, and what is queued meanwhile stays for the next."""

import asyncio

from streams import worker


class _Producer:
    """Stands in for the alerts producer's partition lookup only (what is sent is recorded)."""

    async def partitions_for(self, topic):
        return {0, 1}


def test_alerts_queued_while_a_send_is_under_way_are_sent_next_not_dropped(monkeypatch):
    queue = [(b"a", b"1"), (b"b", b"2")]
    sent = []

    async def send_batches(producer, topic, p, records):
        if not sent:
            queue.append((b"c", b"3"))      # the rules process answered meanwhile
        sent.extend(records)
        await asyncio.sleep(0)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done]

    monkeypatch.setattr(worker, "_alerts_producer", _Producer())
    monkeypatch.setattr(worker.changelog, "send_batches", send_batches)

    async def two_sends():
        await asyncio.gather(worker._send("cs.alerts", queue), worker._send("cs.alerts", queue))

    asyncio.run(two_sends())
    # the first send took a and b; the second, waiting for the first, took c, queued meanwhile
    assert sorted(sent[:2]) == [(b"a", b"1"), (b"b", b"2")] and sent[2:] == [(b"c", b"3")]
    assert queue == []
