import uuid

import pytest

from server import PostgresServer


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL (Debian's package, deploy/postgres/server.py) for the session.

    A machine without it fails these tests (deploy/system-deps.sh installs it), never skips them."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty store: SQLite, then PostgreSQL (the tests that take it run on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres").create_database(f"t{uuid.uuid4().hex[:12]}")
