"""service clients

Revision ID: 0006_api_security
Revises: 0005_rollout
Create Date: 2026-11-28 19:54:00
"""

from collections.abc import Sequence

revision: str = "0006_api_security"
down_revision: str | None = "0005_rollout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
