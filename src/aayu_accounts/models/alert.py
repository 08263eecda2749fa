"""An alert: one row per key, firing or resolved, with what is still to be notified.

The key is the dedupe identity (``database.down``, ``rollout.auto_rollback.auth``): raising
it again while it fires updates the row instead of paging twice. ``notify_pending`` marks a
row whose news (fired, repeat due, resolved) the next grouped notification must carry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base, IdMixin


class Alert(IdMixin, Base):
    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_group_pending", "group_key", "notify_pending"),)

    key: Mapped[str] = mapped_column(String(200), unique=True)
    severity: Mapped[str] = mapped_column(String(16))
    # "firing", "resolved", or "notice" (informational, sent once: the daily summary).
    status: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(String(1000))
    runbook: Mapped[str] = mapped_column(String(100))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    group_key: Mapped[str] = mapped_column(String(100))
    notify_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    notifications: Mapped[int] = mapped_column(Integer, default=0)
    fired_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_raised_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_notified_at: Mapped[datetime | None] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column()
