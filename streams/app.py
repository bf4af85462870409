"""The Faust application and the `cspulse` command line (Faust's own, `app.main()`).

The stream processors of the Kafka runtime will sit on this app beside the
embedded commands, so `cspulse worker` and `cspulse replay` share one entry point.
"""

from __future__ import annotations

import os
import sys

import faust

from cspulse.settings import Settings

app = faust.App(
    "cspulse",
    # Settings.kafka reads the same variable; the broker is only reached by `worker`/`produce`.
    broker=f"kafka://{os.environ.get('CSPULSE_KAFKA', '127.0.0.1:9092')}",
    autodiscover=False,
    store="memory://",
    web_enabled=False,
)


def main() -> None:
    try:
        settings = Settings()
        settings.params()
    except Exception as e:   # pydantic's message is long; the first error is what to fix
        first = str(e).splitlines()
        detail = " ".join(first[1:3]) if len(first) > 2 else str(e)
        sys.exit(f"cspulse: bad setting: {detail.strip()} (check your CSPULSE_* environment and .env)")
    from streams import commands  # noqa: F401  registers the commands on `app`
    commands.SETTINGS = settings
    app.main()
