"""service clients: key ids and their encrypted signing secrets (several live while rotating)

Revision ID: 0006_api_security
Revises: 0005_rollout
Create Date: 2026-11-28 19:54:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from aayu_accounts.models.base import UTCDateTime

revision: str = "0006_api_security"
down_revision: str | None = "0005_rollout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_clients",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("rate_limit_per_second", sa.Integer(), nullable=True),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_clients")),
        sa.UniqueConstraint("name", name=op.f("uq_service_clients_name")),
        sa.UniqueConstraint("key_id", name=op.f("uq_service_clients_key_id")),
    )
    op.create_table(
        "service_client_secrets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(36), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["service_clients.id"],
            name=op.f("fk_service_client_secrets_client_id_service_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_client_secrets")),
    )
    op.create_index(
        op.f("ix_service_client_secrets_client_id"),
        "service_client_secrets",
        ["client_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_service_client_secrets_client_id"), table_name="service_client_secrets")
    op.drop_table("service_client_secrets")
    op.drop_table("service_clients")
