"""A rollback, automatic or manual, with its report (API.md: GET /api/v1/admin/incidents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base, IdMixin


class Incident(IdMixin, Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_created_at", "created_at"),)

    kind: Mapped[str] = mapped_column(String(20))  # "automatic" or "manual"
    severity: Mapped[str] = mapped_column(String(20), default="critical")
    actor: Mapped[str] = mapped_column(String(200))  # "user:<id>", "cli:<os user>", "system:..."
    reason: Mapped[str] = mapped_column(Text, default="")
    flags_before: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    flags_after: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timeline: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    report_path: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
