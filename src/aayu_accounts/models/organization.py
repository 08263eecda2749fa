"""Clinics. ``idle_timeout_minutes`` lowers the session idle timeout for the clinic's members."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.models.base import Base, IdMixin, TimestampMixin


class Organization(IdMixin, TimestampMixin, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    idle_timeout_minutes: Mapped[int] = mapped_column(Integer, default=15)
    # The signed Business Associate Agreement: which version, when, by which owner.
    baa_version: Mapped[str | None] = mapped_column(String(40))
    baa_signed_at: Mapped[datetime | None] = mapped_column()
    baa_signed_by: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="SET NULL")
    )
