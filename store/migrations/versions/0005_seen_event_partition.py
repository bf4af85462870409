"""Event ids the worker keeps say which partition and write-back of its state they came with

The worker stores its applied ids before it commits the state that holds them; a
restarted worker forgets the ids of write-backs its committed state does not include
(their events are read again), so it looks them up by (part, epoch).  Ids stored by
`replay` have neither.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("seen_event") as t:
        t.add_column(sa.Column("part", sa.Integer(), nullable=True))
        t.add_column(sa.Column("epoch", sa.BigInteger(), nullable=True))
    op.create_index("ix_seen_event_part_epoch", "seen_event", ["part", "epoch"])


def downgrade() -> None:
    op.drop_index("ix_seen_event_part_epoch", table_name="seen_event")
    with op.batch_alter_table("seen_event") as t:
        t.drop_column("epoch")
        t.drop_column("part")
