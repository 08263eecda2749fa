"""audit trail

Revision ID: 0003_audit
Revises: 0002_keyring
Create Date: 2026-11-28 19:51:00
"""

from collections.abc import Sequence

revision: str = "0003_audit"
down_revision: str | None = "0002_keyring"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
