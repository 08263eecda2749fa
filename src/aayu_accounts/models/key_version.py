"""Versions of the keyring's keys, each wrapped (AES-256-GCM) by the master key.

The master key lives in the secret store, never here: a copy of the database alone reveals no
key. A retired version loses its key material (``wrapped_key`` is cleared), which is what makes
retirement final.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base, IdMixin

ACTIVE = "active"
RETIRED = "retired"


class KeyVersionRecord(IdMixin, Base):
    __tablename__ = "key_versions"
    __table_args__ = (UniqueConstraint("purpose", "version"),)

    purpose: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The secret store's version of the master key that wrapped it.
    master_version: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    # Published at creation, used for signing/encrypting from this moment (see keyring.core).
    activates_at: Mapped[datetime] = mapped_column(default=clock.now)
    retired_at: Mapped[datetime | None] = mapped_column()
