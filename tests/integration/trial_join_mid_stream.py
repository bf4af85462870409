"""Trials, not part of the suite: a second worker joins while a backlog streams in.

    make trial-join            # RUNS=10 by default; each trial takes about a minute

Each trial produces 3 agents × 3 days (200 conversations a day) to 4 partitions,
starts one worker, starts a second one a second later, and compares the stored
KPIs with `replay` of the file.  The file name keeps pytest from collecting it
(it runs when named on the command line): the outcome depends on timing, so it
measures how often a join is exact rather than asserting it once.  On failure the
message names the counters that differ; `worker*.log` in the trial's tmp dir has
each worker's log (look for `reading the gap from Kafka` and `restored`).
"""

import os
import time

import pytest

from test_worker import assert_kpis_of_replay, replayed, simulated, workers  # noqa: F401  (fixture)


@pytest.mark.parametrize("run", range(int(os.environ.get("RUNS", "10"))))
def test_a_worker_joining_mid_backlog_gives_the_kpis_of_replay(workers, tmp_path, run):  # noqa: F811
    path = simulated(tmp_path, traffic=200)
    expected = replayed(path, tmp_path)
    workers.produce(path)
    workers.start(0)
    time.sleep(1)
    workers.start(1)
    assert_kpis_of_replay(workers, expected, timeout=150)
