"""A planned change of a flag at a moment (the strategy's day-15/17/19/21 plan)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base, IdMixin


class FlagScheduleStep(IdMixin, Base):
    __tablename__ = "flag_schedule_steps"
    __table_args__ = (Index("ix_flag_schedule_steps_due", "applied_at", "run_at"),)

    flag_key: Mapped[str] = mapped_column(
        String(64), ForeignKey("feature_flags.key", ondelete="CASCADE")
    )
    run_at: Mapped[datetime] = mapped_column()
    # None leaves that attribute as it is when the step applies.
    enabled: Mapped[bool | None] = mapped_column(Boolean)
    rollout_percent: Mapped[int | None] = mapped_column(Integer)
    applied_at: Mapped[datetime | None] = mapped_column()
    # "applied", or why it was skipped (e.g. a rollback happened after it was planned).
    outcome: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
