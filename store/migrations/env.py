"""Alembic's environment for the store: the tables of store/models.py, on the
connection `store.migrate` hands over (no alembic.ini: the URL is the store's)."""

from alembic import context
from sqlmodel import SQLModel

import store.models  # noqa: F401  (the tables, on SQLModel.metadata)

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")   # SQLite alters by copying the table
with context.begin_transaction():
    context.run_migrations()
