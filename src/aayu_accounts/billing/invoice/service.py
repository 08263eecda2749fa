"""Invoices: stored as the provider issued them; status only moves forward."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing.invoice import repository
from aayu_accounts.billing.payment_provider.base import InvoiceState
from aayu_accounts.models.invoice import Invoice

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
        return invoice, None
    previous = invoice.status
    if _RANK.get(state.status, 0) >= _RANK.get(invoice.status, 0):
        invoice.status = state.status
        invoice.paid_at = invoice.paid_at or state.paid_at
    invoice.attempt_count = max(invoice.attempt_count, state.attempt_count)
    invoice.hosted_url = state.hosted_url or invoice.hosted_url
    await session.flush()
    return invoice, previous


async def list_for_org(session: AsyncSession, org_id: str) -> Sequence[Invoice]:
    return await repository.for_org(session, org_id)
