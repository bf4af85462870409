"""Trials, not part of the suite: a second worker joins after the first has committed.

    RUNS=3 .venv/bin/python -m pytest tests/integration/trial_join_late.py -q -p no:cacheprovider

The suite's `test_a_second_worker_joining_mid_stream_gives_exactly_replay`, RUNS
times: the second worker starts once the first has committed every partition's
state and read a third of a 9-day file (about 100,000 events), so the rebalance
comes after several of its transactions committed, with one open (committed on
revoke).  Like `trial-join`, the file name keeps pytest from collecting it.
"""

import os

import pytest

from test_worker import test_a_second_worker_joining_mid_stream_gives_exactly_replay as late_join
from test_worker import workers  # noqa: F401  (fixture)


@pytest.mark.parametrize("run", range(int(os.environ.get("RUNS", "3"))))
def test_a_worker_joining_after_commits_gives_the_kpis_of_replay(workers, tmp_path, run):  # noqa: F811
    late_join(workers, tmp_path)
