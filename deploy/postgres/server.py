"""A throwaway PostgreSQL server as a local process, for the tests (no Docker here).

Debian's `postgresql` package provides the binaries (deploy/system-deps.sh installs
it).  The cluster lives in a fresh temporary directory, listens on 127.0.0.1 on a
free port with trust authentication, and is deleted on stop.  PostgreSQL refuses to
run as root, so as root the server runs as the `postgres` user the package creates.

    python deploy/postgres/server.py      # start one, print its URL, stop on Ctrl-C
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("postgres")
    if which:
        return Path(which).parent
    raise RuntimeError("PostgreSQL is not installed: deploy/system-deps.sh installs Debian's postgresql")


class PostgresServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cspulse-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def base_url(self) -> str:
        return f"postgresql+psycopg://cspulse@127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "PostgresServer":
        bindir = _bindir()
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        data = self.root / "data"
        subprocess.run([*self._as, str(bindir / "initdb"), "-D", str(data), "-U", "cspulse", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        log = open(self.root / "server.log", "wb")
        self.proc = subprocess.Popen(
            [*self._as, str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.root),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.execute("SELECT 1")
                return self
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start: {self.log()[-2000:]}")
                time.sleep(0.2)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def execute(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=self.port, user="cspulse", dbname="postgres",
                             autocommit=True, connect_timeout=2) as c:
            c.execute(sql)

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        self.execute(f'CREATE DATABASE "{name}"')
        return f"{self.base_url}/{name}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    server = PostgresServer().start()
    print(f"PostgreSQL on {server.base_url}/postgres  (Ctrl-C stops it and deletes its data)")
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
