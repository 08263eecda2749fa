"""Plans of the catalog, seeded from configuration (billing/plan/catalog.py) into the database.

Money is integer minor units plus an ISO 4217 currency. ``notes_per_seat`` is the monthly note
allowance of one seat (an annual plan grants it per month as well); ``features`` names what the
plan unlocks (the entitlement check's vocabulary).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base


class Plan(Base):
    __tablename__ = "plans"

    # A readable, stable key ("clinic_monthly"): clients and Stripe metadata refer to it.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    interval: Mapped[str] = mapped_column(String(8))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    per_seat: Mapped[bool] = mapped_column(Boolean)
    trial_days: Mapped[int] = mapped_column(Integer, default=0)
    notes_per_seat: Mapped[int] = mapped_column(Integer)
    max_seats: Mapped[int | None] = mapped_column(Integer)
    features: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The Stripe Price (or legacy Plan) id this plan is sold under; None with the local provider.
    stripe_price_id: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)
