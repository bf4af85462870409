"""A single-node Apache Kafka 4 broker (KRaft) as a local process: no Docker needed.

    python deploy/kafka/broker.py start [--port 9092] [--dir .kafka]   # `make kafka`
    python deploy/kafka/broker.py stop  [--dir .kafka]                 # `make kafka-stop`

The broker's jars come from Maven Central once (`mvn dependency:copy-dependencies`
on the pom beside this file) into ~/.cache/cspulse/kafka-<version>/.  Java 17+
runs it.  The tests import `Broker` to start their own on a free port.
Standard library only, so it runs before the project is installed.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = re.search(r"<artifactId>kafka_2\.13</artifactId>\s*<version>([^<]+)</version>",
                    (HERE / "pom.xml").read_text()).group(1)
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cspulse" / f"kafka-{VERSION}"

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
"""


class BrokerError(Exception):
    """The broker could not be fetched, formatted or started; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch_jars() -> Path:
    """The broker's classpath folder, fetched from Maven Central on first use."""
    libs = CACHE / "libs"
    if (libs / f"kafka_2.13-{VERSION}.jar").exists():
        return libs
    if not shutil.which("mvn"):
        raise BrokerError("mvn not found: install Maven (apt-get install maven) to fetch the Kafka broker")
    tmp = CACHE / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"fetching Apache Kafka {VERSION} from Maven Central into {CACHE} (once) …", file=sys.stderr)
    result = subprocess.run(["mvn", "-q", "-B", "-f", str(HERE / "pom.xml"), "dependency:copy-dependencies",
                             f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"mvn could not fetch Kafka {VERSION}: {result.stdout[-500:]}{result.stderr[-500:]}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    return libs


class Broker:
    """One broker process with its own data folder and ports."""

    def __init__(self, folder: Path, port: int | None = None, controller_port: int | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.folder / "broker.pid"

    def _java(self, libs: Path) -> list[str]:
        java = shutil.which("java")
        if not java:
            raise BrokerError("java not found: Kafka 4 needs Java 17 or newer (apt-get install openjdk-17-jre-headless)")
        return [java, "-Xms256m", "-Xmx1G", f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
                "-cp", f"{libs}/*"]

    def start(self, timeout: float = 60) -> "Broker":
        libs = fetch_jars()
        self.folder.mkdir(parents=True, exist_ok=True)
        data = self.folder / "data"
        (self.folder / "log4j2.properties").write_text(LOG4J2.format(log=self.folder / "broker.log"))
        props = self.folder / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
            "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1", "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0", "auto.create.topics.enable=true",
        ]) + "\n")
        java = self._java(libs)
        if not (data / "meta.properties").exists():
            cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            # "--cluster-id=…": a random id may start with "-", which a separate argument would make an option
            fmt = subprocess.run([*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster}", "-c", str(props),
                                  "--standalone"], capture_output=True, text=True)
            if fmt.returncode != 0:
                raise BrokerError(f"could not format {data}: {fmt.stderr.strip()[-400:]}")
        log = open(self.folder / "broker.out", "ab")
        self.process = subprocess.Popen([*java, "kafka.Kafka", str(props)], stdout=log, stderr=log,
                                        start_new_session=True)
        self.pidfile.write_text(str(self.process.pid))
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = (self.folder / "broker.out").read_text(errors="replace")[-800:]
                raise BrokerError(f"the broker exited (code {self.process.returncode}): {tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise BrokerError(f"the broker did not listen on {self.bootstrap} within {timeout:.0f} s; "
                          f"see {self.folder / 'broker.log'}")

    def stop(self, timeout: float = 30) -> None:
        pid = self.process.pid if self.process else _read_pid(self.pidfile)
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                print(f"kafka: broker pid {pid} did not exit after SIGKILL", file=sys.stderr)
        self.pidfile.unlink(missing_ok=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a child we started and that exited is a zombie until reaped
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description="A local single-node Kafka broker for cspulse development.")
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--port", type=int, default=9092)
    ap.add_argument("--controller-port", type=int, default=9093)
    ap.add_argument("--dir", default=".kafka", help="data and log folder [default: .kafka]")
    args = ap.parse_args()
    broker = Broker(Path(args.dir), args.port, args.controller_port)
    try:
        if args.action == "start":
            pid = _read_pid(broker.pidfile)
            if pid and _alive(pid):
                print(f"kafka: already running (pid {pid}) on 127.0.0.1:{args.port}")
                return
            broker.start()
            print(f"kafka: {VERSION} listening on {broker.bootstrap} (data and logs in {broker.folder}); "
                  f"stop with `make kafka-stop`")
        else:
            broker.stop()
            print("kafka: stopped")
    except BrokerError as e:
        sys.exit(f"kafka: {e}")


if __name__ == "__main__":
    main()
