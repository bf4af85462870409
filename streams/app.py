"""The Faust application and the `cspulse` command line (Faust's own, `app.main()`).

The stream processors (streams/worker.py) sit on this app beside the embedded
commands, so `cspulse worker` and `cspulse replay` share one entry point.
"""

from __future__ import annotations

import os
import sys

import faust

from cspulse.settings import Settings
from streams import fetch_cycles

# Every aiokafka consumer of the process (Faust's, the input reader, the plain ones)
# frees a fetch it drops half-read at once (streams/fetch_cycles.py).
fetch_cycles.install()

try:
    SETTINGS = Settings()
except Exception:   # main() reports bad settings in one line; let the import succeed
    SETTINGS = Settings.model_construct()

app = faust.App(
    f"cspulse{os.environ.get('CSPULSE_APP_SUFFIX', '')}",
    broker=f"kafka://{SETTINGS.kafka}",   # only `worker` reaches it
    autodiscover=False,
    store="memory://",          # tables are rebuilt from their changelog topics on start
    # Changelog writes, dead letters and offsets commit in one Kafka transaction per
    # partition: a crash or restart loses no event and counts none twice.
    processing_guarantee="exactly_once",
    topic_partitions=SETTINGS.partitions,
    topic_replication_factor=1,
    web_port=SETTINGS.web_port,
    # A killed worker's partitions move on after 10 s, not Kafka's default 45-60 s.
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    # The worker hands a batch's changelog messages to the producer as aiokafka batches
    # of at most this many bytes, each waiting for the one before it on its partition
    # (streams/changelog.py): at the default 16 KB a backlog batch's megabyte went in
    # 16 KB steps, a produce round trip each (measured, bench/worker.py --agents 20
    # --days 6: 5,555 -> 6,615 events/s).  Under the broker's message.max.bytes (1 MiB).
    producer_max_batch_size=1_000_000,
    # No standby copies of other workers' tables: a worker rebuilds a partition it is
    # given from the partition's changelogs, read to their committed end by itself
    # (`streams/changelog.py`, `read_to_end`), not from what Faust recovered.
    table_standby_replicas=0,
)


def main() -> None:
    from rules.load import RuleFileError
    try:
        settings = Settings()
        settings.params()
        settings.scorecard, settings.month_end   # noqa: B018  checked at start, like the alert rules
    except RuleFileError as e:
        sys.exit(f"cspulse: bad rule file (CSPULSE_RULES_FILE, CSPULSE_SCORECARD_FILE or CSPULSE_MONTH_END_FILE): {e}")
    except Exception as e:   # pydantic's message is long; the first error is what to fix
        first = str(e).splitlines()
        detail = " ".join(first[1:3]) if len(first) > 2 else str(e)
        sys.exit(f"cspulse: bad setting: {detail.strip()} (check your CSPULSE_* environment and .env)")
    from streams import commands, monthend_commands, worker  # noqa: F401  register commands, topics, tables, agents
    commands.SETTINGS = monthend_commands.SETTINGS = settings
    app.main()
