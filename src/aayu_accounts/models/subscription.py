"""One subscription per clinic, mirroring the payment provider's subscription.

``status`` takes Stripe's values. ``provider_version`` is the newest provider state applied
(Stripe's event ``created`` or our own operation counter): an older webhook never overwrites
newer state. ``dunning_stage`` remembers which dunning email went out, so each goes once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.models.base import Base, IdMixin, TimestampMixin


class Subscription(IdMixin, TimestampMixin, Base):
    __tablename__ = "subscriptions"

    org_id: Mapped[str] = mapped_column(String(36), ForeignKey("organizations.id"), unique=True)
    plan_id: Mapped[str] = mapped_column(String(64), ForeignKey("plans.id"))
    status: Mapped[str] = mapped_column(String(24))
    seats: Mapped[int] = mapped_column(Integer)
    current_period_start: Mapped[datetime] = mapped_column()
    current_period_end: Mapped[datetime] = mapped_column()
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    trial_end: Mapped[datetime | None] = mapped_column()
    canceled_at: Mapped[datetime | None] = mapped_column()
    past_due_since: Mapped[datetime | None] = mapped_column()
    dunning_stage: Mapped[str] = mapped_column(String(16), default="none")
    provider: Mapped[str] = mapped_column(String(16))
    provider_customer_id: Mapped[str | None] = mapped_column(String(100))
    provider_subscription_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    # A PaymentMethod id (pm_...): a reference, not card data.
    payment_method: Mapped[str | None] = mapped_column(String(100))
    provider_version: Mapped[int] = mapped_column(BigInteger, default=0)
    # Age (event ``created``) of the customer event that set ``payment_method``.
    payment_method_version: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set when a trialing subscription first becomes active (trial conversion).
    converted_from_trial_at: Mapped[datetime | None] = mapped_column()
