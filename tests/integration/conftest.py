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


@pytest.fixture
def alertmanager(tmp_path):
    """A real Alertmanager (Debian's prometheus-alertmanager) on a free port: its v2 API base URL."""
    import shutil
    import subprocess
    import time
    import urllib.request

    from broker import free_port
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "prometheus-alertmanager is missing: deploy/system-deps.sh installs it"
    port = free_port()
    home = tmp_path / "alertmanager"
    home.mkdir()
    (home / "alertmanager.yml").write_text("route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n")
    proc = subprocess.Popen([binary, f"--config.file={home / 'alertmanager.yml'}", f"--storage.path={home / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/api/v2"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}/status", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"Alertmanager did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def am_alerts(base):
    """The active alerts in an Alertmanager."""
    import json
    import urllib.request
    with urllib.request.urlopen(f"{base}/alerts?active=true&silenced=false&inhibited=false", timeout=5) as r:
        return json.loads(r.read())
