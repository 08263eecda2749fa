"""alerts

Revision ID: 0008_observability
Revises: 0007_billing
Create Date: 2026-11-28 19:56:00

One table: the alerts raised by the rules and by other areas, deduplicated by key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from aayu_accounts.models.base import UTCDateTime

revision: str = "0008_observability"
down_revision: str | None = "0007_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.String(1000), nullable=False),
        sa.Column("runbook", sa.String(100), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("group_key", sa.String(100), nullable=False),
        sa.Column("notify_pending", sa.Boolean(), nullable=False),
        sa.Column("notifications", sa.Integer(), nullable=False),
        sa.Column("fired_at", UTCDateTime(), nullable=False),
        sa.Column("last_raised_at", UTCDateTime(), nullable=False),
        sa.Column("last_notified_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("key", name=op.f("uq_alerts_key")),
    )
    op.create_index("ix_alerts_group_pending", "alerts", ["group_key", "notify_pending"])


def downgrade() -> None:
    op.drop_index("ix_alerts_group_pending", table_name="alerts")
    op.drop_table("alerts")
