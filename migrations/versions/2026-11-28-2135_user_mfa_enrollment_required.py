"""users.mfa_enrollment_required: accounts that must enroll MFA (migrated v2.5 users)

Revision ID: 0009_mfa_enrollment_required
Revises: 0008_observability
Create Date: 2026-11-28 21:35:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_mfa_enrollment_required"
down_revision: str | None = "0008_observability"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD/DROP COLUMN on both databases (SQLite has both since 3.35): a batch-mode table
# rebuild of ``users`` would drop and recreate a table other tables reference.


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column(
            "mfa_enrollment_required", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE users DROP COLUMN mfa_enrollment_required")
