"""Outgoing email. Recipient and body are personal data and encrypted at rest.

Without ``AAYU_SMTP_URL`` (development) a message stays here with status ``local`` and the
console shows it; with SMTP the ``email.send`` job delivers it and marks it ``sent``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.crypto.field_encryption import EncryptedColumn, EncryptedField
from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base, IdMixin


class OutboxEmail(IdMixin, Base):
    __tablename__ = "outbox_emails"
    __table_args__ = (Index("ix_outbox_emails_created_at", "created_at"),)

    to_address_ciphertext: Mapped[bytes] = mapped_column(EncryptedColumn())
    subject: Mapped[str] = mapped_column(String(300))
    # The body carries names and single-use links: encrypted like any personal field.
    body_ciphertext: Mapped[bytes] = mapped_column(EncryptedColumn())
    template: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    sent_at: Mapped[datetime | None] = mapped_column()

    to_address = EncryptedField("to_address_ciphertext")
    body_text = EncryptedField("body_ciphertext")
