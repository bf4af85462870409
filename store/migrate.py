"""The store's schema, created and upgraded by Alembic migrations (store/migrations).

`upgrade(engine)` brings any database to the newest schema: an empty one is
created, an older one migrated.  A database made before migrations existed (the
tables are there, no `alembic_version`) is taken to be at the first revision.
`cspulse db upgrade|downgrade|current` run them by hand (see README, Upgrading).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

FIRST = "0001"


def _config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    return ScriptDirectory.from_config(_config(None)).get_current_head()


def current(engine: Engine) -> str | None:
    """The schema's revision (None: empty), read quietly: every process asks on connect."""
    with engine.connect() as c:
        if not inspect(c).has_table("alembic_version"):
            return None
        return c.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as c:
        if MigrationContext.configure(c).get_current_revision() is None and inspect(c).has_table("kpi_value"):
            command.stamp(_config(c), FIRST)      # made by create_all before migrations
        command.upgrade(_config(c), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as c:
        command.downgrade(_config(c), revision)
