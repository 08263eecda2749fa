"""Invitations to a clinic: a single-use token (stored as its SHA-256) with an expiry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.crypto.field_encryption import (
    BlindIndexColumn,
    EncryptedColumn,
    EncryptedField,
    normalize_email,
)
from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base, IdMixin


class Invitation(IdMixin, Base):
    __tablename__ = "invitations"

    org_id: Mapped[str] = mapped_column(String(36), ForeignKey("organizations.id"), index=True)
    email_ciphertext: Mapped[bytes] = mapped_column(EncryptedColumn())
    # Same index domain as users.email_index: "is this invitee already a user?" is one lookup.
    email_index: Mapped[bytes] = mapped_column(BlindIndexColumn(), index=True)
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="SET NULL")
    )
    expires_at: Mapped[datetime] = mapped_column()
    accepted_at: Mapped[datetime | None] = mapped_column()
    accepted_by: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="SET NULL")
    )
    revoked_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    email = EncryptedField(
        "email_ciphertext", index="email_index", index_kind="email", normalize=normalize_email
    )
