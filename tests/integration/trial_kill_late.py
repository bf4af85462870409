"""Trials, not part of the suite: SIGKILL the worker once half of a 9-day file is read and committed.

    make trial-kill            # RUNS=5 by default; each trial takes one to two minutes

The suite's SIGKILL test kills the worker once every partition has committed
its state.  This also waits until half the file is read, then kills and
restarts it; the stored KPIs must equal `replay` of the file.  Like
`trial-join`, the file name keeps pytest from collecting it, because the
outcome depends on timing: it counts how often a late kill and restart is exact.  `worker*.log` in the
trial's tmp dir has both workers' logs.
"""

import os

import pytest

from test_worker import assert_kpis_of_replay, kill_once_committed, replayed, simulated, workers  # noqa: F401  (fixture)


@pytest.mark.parametrize("run", range(int(os.environ.get("RUNS", "5"))))
def test_killed_late_and_restarted_the_worker_gives_the_kpis_of_replay(workers, tmp_path, run):  # noqa: F811
    path = simulated(tmp_path, days=9, traffic=300)
    lines = len(path.read_bytes().splitlines())
    expected = replayed(path, tmp_path)
    workers.produce(path)
    first = workers.start()
    kill_once_committed(workers, first, lines, read_at_least=lines / 2, within_s=120)
    workers.start()
    assert_kpis_of_replay(workers, expected)
