"""User documents in the database (the new store of what v2.5 kept in LocalStorage)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

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
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
