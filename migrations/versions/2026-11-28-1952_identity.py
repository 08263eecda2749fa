"""identity

Revision ID: 0004_identity
Revises: 0003_audit
Create Date: 2026-11-28 19:52:00
"""

from collections.abc import Sequence

revision: str = "0004_identity"
down_revision: str | None = "0003_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
