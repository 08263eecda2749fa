"""The one-row global version of the flag configuration.

Every flag change increments it in the same transaction; each instance reports the version it
applied, and the safety-net poll compares it with its own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base

SINGLETON_ID = 1


class FlagConfigState(Base):
    __tablename__ = "flag_config_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=SINGLETON_ID)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
