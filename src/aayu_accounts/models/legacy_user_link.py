"""Which identity user a v2.5 (legacy) user was migrated into.

The legacy user is named by their opaque subject (a hash of the v2.5 username, see
``rollout/legacy/credentials.py``), never by the username itself.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base


class LegacyUserLink(Base):
    __tablename__ = "legacy_user_links"

    legacy_subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    migrated_at: Mapped[datetime] = mapped_column(default=clock.now)
