"""user_documents.document_ciphertext: documents sealed at rest; the plaintext column nullable

Revision ID: 0011_user_documents_sealed
Revises: 0010_audit_intake
Create Date: 2026-11-29 05:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_user_documents_sealed"
down_revision: str | None = "0010_audit_intake"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Rows written before this keep their plaintext until the leader's rollout.seal_documents duty
# seals them (a migration has no keys). The table is referenced by no other, so SQLite's
# batch rebuild (needed to drop NOT NULL) is safe here.


def upgrade() -> None:
    with op.batch_alter_table("user_documents") as batch:
        batch.add_column(sa.Column("document_ciphertext", sa.LargeBinary(), nullable=True))
        batch.alter_column("document", existing_type=sa.JSON(), nullable=True)


def downgrade() -> None:
    sealed = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM user_documents WHERE document_ciphertext IS NOT NULL")
    )
    if sealed:
        # Going back would drop the only copy of these documents: open them first (there is no
        # tool for that on purpose) or restore a backup taken before the upgrade.
        raise RuntimeError(
            f"{sealed} user documents are sealed; downgrading past 0011 would lose them"
        )
    with op.batch_alter_table("user_documents") as batch:
        batch.drop_column("document_ciphertext")
        batch.alter_column("document", existing_type=sa.JSON(), nullable=False)
