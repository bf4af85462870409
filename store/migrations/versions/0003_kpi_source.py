"""What the stored KPIs were computed from (a digest per agent or shop and period)

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kpi_source",
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("period", "agent_id"))


def downgrade() -> None:
    op.drop_table("kpi_source")
