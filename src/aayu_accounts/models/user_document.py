"""User documents in the database (the new store of what v2.5 kept in LocalStorage).

A scribe app's stored documents may hold clinical text, so the content is sealed like every
personal field: AES-256-GCM under the data key, bound to the row (``content``). ``document``
is the plaintext column of rows written before that (migration 0011); nothing writes it any
more, and the leader's ``rollout.seal_documents`` duty moves what is left into ``content``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.crypto.field_encryption import EncryptedColumn, EncryptedField
from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base, IdMixin


class UserDocument(IdMixin, Base):
    __tablename__ = "user_documents"
    __table_args__ = (UniqueConstraint("subject", "key"),)

    # The data subject: the legacy username for people who came from v2.5, else the user id.
    # The same key names the owner in both stores, so shadow writes and switching
    # NEW_DATABASE find the same documents (no foreign key: a legacy-only user has no row).
    subject: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(128))
    # Plaintext of rows written before the content was sealed (SQL NULL once sealed).
    document: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    document_ciphertext: Mapped[bytes | None] = mapped_column(EncryptedColumn())
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)

    # The document as compact JSON text, sealed into document_ciphertext.
    content = EncryptedField("document_ciphertext")
