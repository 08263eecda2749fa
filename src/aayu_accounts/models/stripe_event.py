"""The inbox of Stripe webhook events: unique on Stripe's event id, so a redelivery is
acknowledged and ignored. The raw payload is kept for processing in a job and for replay."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base


class StripeEvent(Base):
    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    # Stripe's ``created`` (Unix seconds): the event's age, used to order state changes.
    created: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="received")
    received_at: Mapped[datetime] = mapped_column(default=clock.now)
    processed_at: Mapped[datetime | None] = mapped_column()
