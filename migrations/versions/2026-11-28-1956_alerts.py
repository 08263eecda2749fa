"""alerts

Revision ID: 0008_observability
Revises: 0007_billing
Create Date: 2026-11-28 19:56:00
"""

from collections.abc import Sequence

revision: str = "0008_observability"
down_revision: str | None = "0007_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
