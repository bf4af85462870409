"""Fetched record sets that aiokafka drops unread are freed at once, not by a full collection.

aiokafka 0.14's `PartitionRecords` (one partition's share of a fetch response) keeps
its records as a generator over its own method: the generator's frame holds the
`PartitionRecords`, which holds the generator, a reference cycle that aiokafka
breaks only when the generator runs to its end.  A fetch dropped before that, when
its partition is paused (the reader's pace, `streams/inputs.py`), sought (a gap,
a stall) or given up (a rebalance), is garbage that only the cyclic collector frees,
together with the fetch response's bytes it holds (a megabyte a partition).  The
worker freezes what survives to each refresh, out of the collector's sight
(`_spare_the_collector` in `streams/worker.py`), and only thaws it for a full
collection every 15 minutes or more: measured on `bench/worker.py --days 35`, the
live `PartitionRecords` climbed 80 -> 183 in 100 s while the live fetch results
stayed at 80, and malloc's bytes in use with them, 65 -> 161 MB.

`install()` makes the generator reach its `PartitionRecords` through a weak proxy,
so there is no cycle: reference counting frees a dropped fetch as soon as aiokafka
lets go of it, and one read to the end behaves as before.
`tests/unit/test_fetch_cycles.py` shows both.
"""

from __future__ import annotations

import weakref

from aiokafka.consumer.fetcher import PartitionRecords

_unpatched_init = PartitionRecords.__init__


def _init_without_cycle(self: PartitionRecords, *args, **kwargs) -> None:
    _unpatched_init(self, *args, **kwargs)
    # (the generator the unpatched init made has not started: dropping it frees it)
    self._records_iterator = PartitionRecords._unpack_records(weakref.proxy(self))


def install() -> None:
    """Build every later `PartitionRecords` without the cycle (idempotent)."""
    PartitionRecords.__init__ = _init_without_cycle
