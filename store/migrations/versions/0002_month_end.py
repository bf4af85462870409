"""The month-end close: reviews, closes (revisions), consequences, plan decisions, adjustments

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reviewer", sa.String(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("period", "agent_id", "kind"))
    op.create_table(
        "month_close",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.Column("closed_at", sa.String(), nullable=False),
        sa.Column("issued_at", sa.String(), nullable=False),
        sa.Column("result", sa.String(), nullable=False),
        sa.Column("changes", sa.String(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("period", "revision"))
    op.create_index("ix_month_close_current", "month_close", ["current"])
    op.create_table(
        "consequence",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("due", sa.String(), nullable=True),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("evidence", sa.String(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_consequence_period", "consequence", ["period"])
    op.create_table(
        "plan_decision",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("by", sa.String(), nullable=False),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("period", "agent_id"))
    op.create_table(
        "adjustment",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.String(), nullable=True),
        sa.Column("customer_id", sa.String(), nullable=True),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"))
    op.create_index("ix_adjustment_period", "adjustment", ["period"])


def downgrade() -> None:
    for table in ("adjustment", "plan_decision", "consequence", "month_close", "review"):
        op.drop_table(table)
