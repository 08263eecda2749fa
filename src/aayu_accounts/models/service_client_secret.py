"""Signing secrets of service clients, encrypted under the keyring's client-secret key.

Not hashed: verifying an HMAC needs the secret itself. Several rows per client are live while a
rotation's grace period runs; ``expires_at`` is when an old secret stops being accepted.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.crypto.field_encryption import EncryptedColumn, EncryptedField
from aayu_accounts.crypto.keyring.purposes import KeyPurpose
from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base, IdMixin


class ServiceClientSecret(IdMixin, Base):
    __tablename__ = "service_client_secrets"

    client_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("service_clients.id", ondelete="CASCADE"), index=True
    )
    secret_ciphertext: Mapped[bytes] = mapped_column(EncryptedColumn())
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    # None while it is the current secret; set when a rotation replaces it.
    expires_at: Mapped[datetime | None] = mapped_column()

    secret = EncryptedField("secret_ciphertext", purpose=KeyPurpose.CLIENT_SECRET)
