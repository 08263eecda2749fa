"""Leases for singleton duties where PostgreSQL advisory locks are not available (SQLite)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.models.base import Base


class LeaderLease(Base):
    __tablename__ = "leader_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column()
