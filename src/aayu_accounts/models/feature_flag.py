"""Feature flags of the safe rollout (see rollout/flag/)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base


class FeatureFlag(Base):
    __tablename__ = "feature_flags"
    __table_args__ = (
        CheckConstraint("rollout_percent >= 0 AND rollout_percent <= 100", name="percent_range"),
    )

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    rollout_percent: Mapped[int] = mapped_column(Integer, default=0)
    # Lists of opaque ids; deny wins over allow, allow wins over the percentage.
    allow_user_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    deny_user_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    allow_org_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    deny_org_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Keys of flags that must be on for the same user for this one to be on.
    requires: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Unleash's groupId: flags sharing a group put the same users in the same buckets, so the
    # 25 % on NEW_AUTH and the 25 % on NEW_DATABASE are the same people. None = the key.
    bucket_group: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
