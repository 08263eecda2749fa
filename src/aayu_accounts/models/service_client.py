"""Service clients: the scribe app's backend and other programs that sign their requests."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.models.base import Base, IdMixin, TimestampMixin


class ServiceClient(IdMixin, TimestampMixin, Base):
    __tablename__ = "service_clients"

    # Stored exactly as given (parameterized queries only): "O'Brien; DROP TABLE" is a name.
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Public identifier sent in X-Aayu-Key-Id; the secret itself is in service_client_secrets.
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    # Requests per second; None means the configured default.
    rate_limit_per_second: Mapped[int | None] = mapped_column(Integer)
    disabled_at: Mapped[datetime | None] = mapped_column()
