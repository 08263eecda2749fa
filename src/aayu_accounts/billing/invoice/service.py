"""Invoices: stored as the provider issued them; status only moves forward."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing.hooks import after_commit
from aayu_accounts.billing.invoice import repository
from aayu_accounts.billing.payment_provider.base import InvoiceState
from aayu_accounts.models.invoice import Invoice
from aayu_accounts.observability import metrics

# Stripe's invoice lifecycle: draft -> open -> paid | void | uncollectible. An older event
# must not move an invoice back (a late "finalized" after "paid").
_RANK = {"draft": 0, "open": 1, "uncollectible": 2, "void": 3, "paid": 3}


async def upsert(
    session: AsyncSession, state: InvoiceState, *, org_id: str, subscription_id: str | None
) -> tuple[Invoice, str | None]:
    """Store or advance an invoice; returns it and its previous status (None when new)."""
    invoice = await repository.by_provider_id(session, state.provider_invoice_id)
    if invoice is None:
        invoice = Invoice(
            org_id=org_id,
            subscription_id=subscription_id,
            provider_invoice_id=state.provider_invoice_id,
            status=state.status,
            billing_reason=state.billing_reason,
            amount_cents=state.amount_cents,
            currency=state.currency,
            period_start=state.period_start,
            period_end=state.period_end,
            hosted_url=state.hosted_url,
            attempt_count=state.attempt_count,
            paid_at=state.paid_at,
        )
        session.add(invoice)
        await session.flush()
        if state.amount_cents > 0 and state.attempt_count > 0 and state.status != "draft":
            _count_payment(session, "succeeded" if state.status == "paid" else "failed")
        return invoice, None
    previous = invoice.status
    if _RANK.get(state.status, 0) >= _RANK.get(invoice.status, 0):
        invoice.status = state.status
        invoice.paid_at = invoice.paid_at or state.paid_at
    if invoice.amount_cents > 0 and previous != "paid":
        if invoice.status == "paid":
            _count_payment(session, "succeeded")
        elif state.attempt_count > invoice.attempt_count:
            _count_payment(session, "failed")
    invoice.attempt_count = max(invoice.attempt_count, state.attempt_count)
    invoice.hosted_url = state.hosted_url or invoice.hosted_url
    await session.flush()
    return invoice, previous


async def list_for_org(session: AsyncSession, org_id: str) -> Sequence[Invoice]:
    return await repository.for_org(session, org_id)


def _count_payment(session: AsyncSession, outcome: str) -> None:
    """Feeds the billing.failures alert (share of failed payment attempts), once committed."""
    after_commit(session, lambda: metrics.BILLING_PAYMENTS.labels(outcome).inc())


async def mark_paid(session: AsyncSession, invoice: Invoice, now: datetime) -> None:
    """An open invoice collected outside an event (the local provider's retry)."""
    if invoice.status == "paid":
        return
    invoice.status, invoice.paid_at = "paid", now
    invoice.attempt_count += 1
    if invoice.amount_cents > 0:
        _count_payment(session, "succeeded")
    await session.flush()
