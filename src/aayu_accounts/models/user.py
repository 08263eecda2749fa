"""People who sign in. Personal fields are encrypted at rest; email lookups use a blind index."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.crypto.field_encryption import (
    BlindIndexColumn,
    EncryptedColumn,
    EncryptedField,
    normalize_email,
)
from aayu_accounts.models.base import Base, IdMixin, TimestampMixin


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    # What the database holds: ciphertexts (AES-256-GCM bound to this row) and an HMAC index.
    email_ciphertext: Mapped[bytes] = mapped_column(EncryptedColumn())
    email_index: Mapped[bytes] = mapped_column(BlindIndexColumn(), unique=True)
    full_name_ciphertext: Mapped[bytes] = mapped_column(EncryptedColumn())
    totp_secret_ciphertext: Mapped[bytes | None] = mapped_column(EncryptedColumn())
    # A secret offered at enrollment, kept until it is confirmed with a code.
    totp_pending_ciphertext: Mapped[bytes | None] = mapped_column(EncryptedColumn())

    password_hash: Mapped[str] = mapped_column(String(255))
    password_changed_at: Mapped[datetime | None] = mapped_column()
    email_verified_at: Mapped[datetime | None] = mapped_column()
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set for accounts that must enroll MFA whatever their clinics require (v2.5 users
    # migrated from the hardcoded credential list): enrollment comes before anything else.
    mfa_enrollment_required: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # The last accepted TOTP time step: a code at or before it is a replay.
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    terms_version: Mapped[str | None] = mapped_column(String(40))
    terms_accepted_at: Mapped[datetime | None] = mapped_column()
    privacy_version: Mapped[str | None] = mapped_column(String(40))
    privacy_accepted_at: Mapped[datetime | None] = mapped_column()

    # What code uses: plaintext in and out, encrypted on assignment.
    email = EncryptedField(
        "email_ciphertext", index="email_index", index_kind="email", normalize=normalize_email
    )
    full_name = EncryptedField("full_name_ciphertext")
    totp_secret = EncryptedField("totp_secret_ciphertext")
    totp_pending_secret = EncryptedField("totp_pending_ciphertext")
