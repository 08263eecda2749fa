"""auth_sessions.ip and user_agent sealed at rest (ip_ciphertext, user_agent_ciphertext)

Revision ID: 0012_auth_sessions_sealed
Revises: 0011_user_documents_sealed
Create Date: 2026-11-29 09:35:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_auth_sessions_sealed"
down_revision: str | None = "0011_user_documents_sealed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The plaintext address and browser of existing sessions are dropped, not carried over: a
# migration has no keys, and nothing depends on them. Each live session gets them back, sealed,
# at its next coalesced activity write (AAYU_SESSION_TOUCH_SECONDS); only the "your sessions"
# list shows them. No table refers to auth_sessions, so SQLite's batch rebuild is safe here.


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("ip_ciphertext", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("user_agent_ciphertext", sa.LargeBinary(), nullable=True))
        batch.drop_column("ip")
        batch.drop_column("user_agent")


def downgrade() -> None:
    # Back to plaintext columns, empty: the sealed values are not opened on the way down.
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("ip", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("user_agent", sa.String(length=300), nullable=True))
        batch.drop_column("user_agent_ciphertext")
        batch.drop_column("ip_ciphertext")
