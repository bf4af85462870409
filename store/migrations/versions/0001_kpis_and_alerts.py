"""KPIs, goals, dead letters, dedup ids, core state, runs and alerts (the schema of issues 1-4)

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kpi_value",
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("kpi", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("period", "agent_id", "kpi"))
    op.create_table(
        "goal",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("kpi", sa.String(64), nullable=False),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("reviewer", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("period", "agent_id", "kpi"))
    op.create_table(
        "rejected_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("raw", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"))
    op.create_table(
        "seen_event",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"))
    op.create_table(
        "partition_book",
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("counters", sa.String(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("partition"))
    op.create_table(
        "core_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"))
    op.create_table(
        "replay_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("sources", sa.String(), nullable=False),
        sa.Column("read", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"))
    op.create_table(
        "alert",
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fired_at_us", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("data", sa.String(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"))
    for column in ("agent_id", "fired_at_us", "rule", "state"):
        op.create_index(f"ix_alert_{column}", "alert", [column])


def downgrade() -> None:
    for table in ("alert", "replay_run", "core_state", "partition_book", "seen_event", "rejected_event", "goal",
                  "kpi_value"):
        op.drop_table(table)       # (a table's indexes go with it)
