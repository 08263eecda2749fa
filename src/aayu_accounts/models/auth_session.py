"""Signed-in sessions. Only the SHA-256 of the 256-bit token is stored; the address and
browser the session was last seen from are sealed like personal fields (an IP address is one of
HIPAA's identifiers)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.crypto.field_encryption import EncryptedColumn, EncryptedField
from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base, IdMixin


class AuthSession(IdMixin, Base):
    __tablename__ = "auth_sessions"

    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    # Written at most once a minute (coalesced), not on every request.
    last_seen_at: Mapped[datetime] = mapped_column(default=clock.now)
    # Absolute end of life; the idle timeout is judged against last_seen_at.
    expires_at: Mapped[datetime] = mapped_column()
    idle_timeout_seconds: Mapped[int] = mapped_column(Integer)
    ip_ciphertext: Mapped[bytes | None] = mapped_column(EncryptedColumn())
    user_agent_ciphertext: Mapped[bytes | None] = mapped_column(EncryptedColumn())
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoke_reason: Mapped[str | None] = mapped_column(String(40))

    # Plaintext access; the columns hold only ciphertexts bound to this row.
    ip = EncryptedField("ip_ciphertext")
    user_agent = EncryptedField("user_agent_ciphertext")
