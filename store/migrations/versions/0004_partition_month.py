"""Partition books kept a month a row, with a digest (written and read again only where changed)

Revision ID: 0004
Revises: 0003
"""
import hashlib
import json
from collections import defaultdict
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_book = sa.table("partition_book", sa.column("partition", sa.Integer()), sa.column("counters", sa.String()),
                 sa.column("updated_at", UTCDateTime()))
_month = sa.table("partition_month", sa.column("partition", sa.Integer()), sa.column("month", sa.String()),
                  sa.column("counters", sa.String()), sa.column("digest", sa.String()),
                  sa.column("updated_at", UTCDateTime()))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()     # as store.repo.text_digest (a migration keeps its own copy)


def upgrade() -> None:
    op.create_table(
        "partition_month",
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("counters", sa.String(), nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("partition", "month"))
    conn = op.get_bind()
    rows = []
    for partition, counters, updated_at in conn.execute(sa.select(_book.c.partition, _book.c.counters,
                                                                  _book.c.updated_at)):
        months: dict[str, dict] = defaultdict(dict)
        for key, bucket in json.loads(counters).items():
            months[key.split("|", 1)[1][:7]][key] = bucket
        for month, buckets in months.items():
            text = json.dumps(buckets, sort_keys=True)
            rows.append({"partition": partition, "month": month, "counters": text, "digest": _digest(text),
                         "updated_at": updated_at})
    if rows:
        op.bulk_insert(_month, rows)
    op.drop_table("partition_book")


def downgrade() -> None:
    op.create_table(
        "partition_book",
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("counters", sa.String(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("partition"))
    conn = op.get_bind()
    books: dict[int, dict] = defaultdict(dict)
    for partition, counters in conn.execute(sa.select(_month.c.partition, _month.c.counters)):
        books[partition].update(json.loads(counters))
    if books:
        op.bulk_insert(_book, [{"partition": p, "counters": json.dumps(b), "updated_at": datetime.now(timezone.utc)}
                               for p, b in books.items()])
    op.drop_table("partition_month")
