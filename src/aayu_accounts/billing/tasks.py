"""Billing jobs and periodic duties.

* ``billing.stripe_event``: process one stored webhook event (at least once; idempotent).
* ``billing.duplicate_subscription``: cancel and refund a clinic's second Stripe subscription
  (two Checkouts completed); retried with backoff while Stripe is unreachable.
* ``billing.tick`` (periodic, leader only): renew the local provider's subscriptions whose
  period ended, restrict those whose grace period ended, refresh the revenue metrics.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing import dunning, runtime
from aayu_accounts.billing.payment_provider.factory import get_provider
from aayu_accounts.billing.stripe_webhook import service as webhooks
from aayu_accounts.billing.subscription import service as subscriptions
from aayu_accounts.config import PaymentProvider as ProviderChoice
from aayu_accounts.db import Database
from aayu_accounts.jobs import job_handler
from aayu_accounts.kit import clock

log = structlog.get_logger(__name__)


@job_handler(webhooks.PROCESS_JOB, max_attempts=12)
async def process_stripe_event(session: AsyncSession, payload: dict[str, Any]) -> None:
    settings = runtime.current().settings
    provider = (
        get_provider(settings) if settings.payment_provider is ProviderChoice.STRIPE else None
    )
    outcome = await webhooks.process(session, str(payload["event_id"]), provider)
    log.info("stripe.event_processed", event_id=payload["event_id"], outcome=outcome)


@job_handler(webhooks.DUPLICATE_JOB, max_attempts=16)
async def cancel_duplicate_subscription(session: AsyncSession, payload: dict[str, Any]) -> None:
    settings = runtime.current().settings
    if settings.payment_provider is not ProviderChoice.STRIPE:
        log.warning("stripe.duplicate_without_stripe", org_id=payload["org_id"])
        return
    outcome = await webhooks.cancel_duplicate(
        session,
        get_provider(settings),
        org_id=str(payload["org_id"]),
        subscription_id=str(payload["subscription_id"]),
    )
    log.info(
        "stripe.duplicate_subscription_done",
        org_id=payload["org_id"],
        subscription_id=payload["subscription_id"],
        outcome=outcome,
    )


async def tick(db: Database) -> None:
    settings = runtime.current().settings
    provider = get_provider(settings)
    async with db.session_scope() as session:
        if provider.name == "local":
            await subscriptions.renew_due(session, provider)
        await dunning.advance(session, clock.now())
