"""Invoices as the provider issued them (Stripe's statuses: draft, open, paid, void,
uncollectible). Amounts in minor units."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aayu_accounts.kit import clock
from aayu_accounts.models.base import Base, IdMixin


class Invoice(IdMixin, Base):
    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_org_id_created_at", "org_id", "created_at"),)

    org_id: Mapped[str] = mapped_column(String(36), ForeignKey("organizations.id"))
    subscription_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("subscriptions.id", ondelete="SET NULL")
    )
    provider_invoice_id: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    # subscription_create, subscription_cycle, subscription_update (Stripe's billing_reason)
    billing_reason: Mapped[str] = mapped_column(String(32))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[datetime] = mapped_column()
    period_end: Mapped[datetime] = mapped_column()
    hosted_url: Mapped[str | None] = mapped_column(String(500))
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    paid_at: Mapped[datetime | None] = mapped_column()
