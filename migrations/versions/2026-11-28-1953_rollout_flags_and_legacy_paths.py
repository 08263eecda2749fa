"""rollout flags and legacy paths

Revision ID: 0005_rollout
Revises: 0004_identity
Create Date: 2026-11-28 19:53:00
"""

from collections.abc import Sequence

revision: str = "0005_rollout"
down_revision: str | None = "0004_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
