"""Trials, not part of the suite: a second worker joins after the first has committed.

    RUNS=3 .venv/bin/python -m pytest tests/integration/trial_join_late.py -q -p no:cacheprovider

Like `trial-join`, but the second worker starts once the first has committed every
partition's state and read a third of a 9-day file (about 100,000 events), so the rebalance comes after
several of its transactions committed, with one open (committed on revoke since).
"""

import os
import time

import pytest

from test_worker import assert_kpis_of_replay, committed_everywhere, events_read, month_kpis, replayed, simulated, workers  # noqa: F401  (fixture)


@pytest.mark.parametrize("run", range(int(os.environ.get("RUNS", "3"))))
def test_a_worker_joining_after_commits_gives_the_kpis_of_replay(workers, tmp_path, run):  # noqa: F811
    path = simulated(tmp_path, days=9, traffic=600)   # long enough to be mid-stream when the second joins
    lines = len(path.read_bytes().splitlines())
    expected = replayed(path, tmp_path)
    workers.produce(path)
    workers.start(0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if month_kpis(workers.db) and committed_everywhere(workers) and events_read(workers.ports[-1]) >= lines / 3:
            break
        time.sleep(0.1)
    workers.start(1)
    assert_kpis_of_replay(workers, expected)
