import os
import uuid

import pytest

from broker import Broker


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """A real Apache Kafka broker: CSPULSE_KAFKA if given, else one started here on a free port.

    Starting may fetch the broker's jars from Maven Central once; a machine that
    cannot run it fails these tests (CI must provide Java and Maven), never skips them.
    """
    given = os.environ.get("CSPULSE_KAFKA")
    if given:
        yield given
        return
    broker = Broker(tmp_path_factory.mktemp("kafka")).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def prefix():
    """Topics of their own for each test: a fresh prefix on the shared broker."""
    return f"t{uuid.uuid4().hex[:8]}."
