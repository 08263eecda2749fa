"""Stripe's hosted pages for a clinic: the customer portal and Checkout.

* ``create_portal_session``: the clinic's Stripe customer portal (invoices, cards, cancel).
  Needs a subscription with a Stripe customer (404 ``no_subscription`` otherwise).
* ``create_checkout_session``: ``subscription`` mode subscribes a clinic that has no live
  subscription (409 ``subscription_exists`` otherwise); ``setup`` mode saves a new payment
  method for the clinic's customer.
* With the ``local`` provider neither exists: 409 ``not_supported_by_provider`` (the API's
  own subscription routes do the same things without a hosted page).

The same Checkout asked for again within :data:`CHECKOUT_WINDOW_SECONDS` (a double click, a
second tab, a return from the page's back link) carries the same idempotency key, so Stripe
answers with the session it already created instead of opening a second one: one session can
complete only once, which closes the usual way a clinic ends up subscribed twice. (Two
sessions with different plans or seats can still both complete; the webhook then cancels and
refunds the second subscription, see ``stripe_webhook``.)

Only ``owner`` and ``billing`` may open them. Creating a session changes nothing of ours, but
is audited (who sent the clinic to a payment page, in which mode). Return addresses must be on
``AAYU_PUBLIC_URL``: Stripe would otherwise redirect a clinic's browser anywhere a caller
chose. What the customer does on the page comes back as webhooks
(:func:`complete_checkout` for ``checkout.session.completed``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.billing import runtime
from aayu_accounts.billing.errors import (
    InvalidReturnUrl,
    NoSubscription,
    NotSupportedByProvider,
    PaymentProviderRefused,
    SubscriptionExists,
    UnknownPlan,
)
from aayu_accounts.billing.payment_provider.base import (
    CheckoutRequest,
    PaymentProvider,
    ProviderRefused,
)
from aayu_accounts.billing.payment_provider.base import NotSupportedByProvider as ProviderLacks
from aayu_accounts.billing.subscription import repository
from aayu_accounts.billing.subscription.service import plan_for_new_subscription, price_of
from aayu_accounts.identity.permissions import Permission, require
from aayu_accounts.kit import clock
from aayu_accounts.kit.ids import new_id

LIVE_ENDED = frozenset({"canceled", "incomplete_expired"})
# Identical Checkout requests of one clinic within this window share one Stripe session.
CHECKOUT_WINDOW_SECONDS = 900


def checkout_op_id(request: CheckoutRequest) -> str:
    """The operation id (hence Stripe idempotency key) of a Checkout: the clinic, a digest of
    everything the session is made of, and the current window. Same request, same window:
    same key, and Stripe replays the first session (same parameters, so never the "key reused
    with other parameters" error)."""
    window = int(clock.now().timestamp()) // CHECKOUT_WINDOW_SECONDS
    made_of = json.dumps({**asdict(request), "window": window}, sort_keys=True, default=str)
    digest = hashlib.sha256(made_of.encode()).hexdigest()[:32]
    return f"checkout:{request.org_id}:{digest}"


@dataclass(frozen=True)
class CheckoutStarted:
    url: str
    mode: str


def offers_hosted_pages(provider: PaymentProvider) -> bool:
    """Whether the provider has Checkout and a customer portal (pages show their buttons)."""
    return provider.name == "stripe"


def billing_page_url(org_id: str) -> str:
    """The clinic's billing page (the default return address of hosted pages and emails)."""
    return f"{runtime.current().settings.public_url.rstrip('/')}/orgs/{org_id}/billing"


def own_url(url: str | None, default: str) -> str:
    """``url`` when it is on this service's public origin, ``default`` when None; else 422."""
    if url is None:
        return default
    public = urlsplit(runtime.current().settings.public_url)
    given = urlsplit(url)
    if (given.scheme, given.netloc) != (public.scheme, public.netloc) or not given.netloc:
        raise InvalidReturnUrl(
            f"Return addresses must start with {public.scheme}://{public.netloc}."
        )
    return url


def _not_supported(provider: PaymentProvider, feature: str) -> NotSupportedByProvider:
    return NotSupportedByProvider(
        f"The {provider.name} payment provider has no {feature}; "
        "use the subscription routes of the API instead."
    )


def _refused(refused: ProviderRefused) -> PaymentProviderRefused:
    return PaymentProviderRefused(
        f"Stripe refused the request ({refused.code}); check the account's settings "
        "(customer portal configuration, Checkout).",
        extra={"provider_code": refused.code},
    )


@contextmanager
def _refusals_of(provider: PaymentProvider, feature: str) -> Iterator[None]:
    """The provider's refusals of a hosted page, as this API's errors (both 409)."""
    try:
        yield
    except ProviderLacks:
        raise _not_supported(provider, feature) from None
    except ProviderRefused as refused:
        raise _refused(refused) from None


async def create_portal_session(
    session: AsyncSession,
    provider: PaymentProvider,
    *,
    actor: Actor,
    role: str,
    org_id: str,
    return_url: str | None = None,
) -> str:
    """The URL of the clinic's Stripe customer portal. Raises NoSubscription (404, no Stripe
    customer yet), NotSupportedByProvider (409), InvalidReturnUrl (422)."""
    require(role, Permission.SUBSCRIPTION_MANAGE)
    target = own_url(return_url, billing_page_url(org_id))
    sub = await repository.for_org(session, org_id)
    if sub is None or not sub.provider_customer_id or sub.provider != provider.name:
        if provider.name == "local":
            raise _not_supported(provider, "customer portal")
        raise NoSubscription("The clinic has no Stripe customer yet: subscribe first.")
    with _refusals_of(provider, "customer portal"):
        url = await provider.create_portal_session(
            customer_id=sub.provider_customer_id, return_url=target, op_id=new_id()
        )
    await record(
        session,
        AuditAction.PORTAL_SESSION_CREATED,
        actor=actor,
        org_id=org_id,
        target_type="subscription",
        target_id=sub.id,
        details={"provider": provider.name},
    )
    return url


async def create_checkout_session(
    session: AsyncSession,
    provider: PaymentProvider,
    *,
    actor: Actor,
    role: str,
    org_id: str,
    mode: str | None = None,
    plan_id: str | None = None,
    seats: int | None = None,
    trial: bool = True,
    success_url: str | None = None,
    cancel_url: str | None = None,
) -> CheckoutStarted:
    """A hosted Checkout page. ``mode`` defaults to ``subscription`` without a live
    subscription, else ``setup``. Raises SubscriptionExists (409, subscription mode with a
    live subscription), NoSubscription (404, setup mode without a Stripe customer),
    UnknownPlan / InvalidSeats (422), SeatsBelowUsage (409), NotSupportedByProvider (409),
    InvalidReturnUrl (422)."""
    require(role, Permission.SUBSCRIPTION_MANAGE)
    page = billing_page_url(org_id)
    success = own_url(success_url, f"{page}?checkout=done")
    cancel = own_url(cancel_url, f"{page}?checkout=canceled")
    if provider.name == "local":
        raise _not_supported(provider, "Checkout")
    existing = await repository.for_org(session, org_id)
    live = existing is not None and existing.status not in LIVE_ENDED
    chosen = mode or ("setup" if live else "subscription")
    details: dict[str, object] = {"mode": chosen, "provider": provider.name}
    if chosen == "subscription":
        if live:
            raise SubscriptionExists()
        if plan_id is None:
            raise UnknownPlan("A subscription Checkout needs a plan_id.")
        wanted = seats if seats is not None else 1
        plan = await plan_for_new_subscription(session, org_id, plan_id, wanted)
        trial_days = plan.trial_days if trial and existing is None else 0
        request = CheckoutRequest(
            org_id=org_id,
            mode="subscription",
            success_url=success,
            cancel_url=cancel,
            # A clinic that had a subscription keeps its Stripe customer (and its history).
            customer_id=existing.provider_customer_id if existing is not None else None,
            price=price_of(plan),
            seats=wanted,
            trial_days=trial_days,
        )
        details |= {"plan_id": plan.id, "seats": wanted, "trial_days": trial_days}
    else:
        if existing is None or not existing.provider_customer_id:
            raise NoSubscription("The clinic has no Stripe customer yet: subscribe first.")
        request = CheckoutRequest(
            org_id=org_id,
            mode="setup",
            success_url=success,
            cancel_url=cancel,
            customer_id=existing.provider_customer_id,
        )
    with _refusals_of(provider, "Checkout"):
        url = await provider.create_checkout_session(request, op_id=checkout_op_id(request))
    await record(
        session,
        AuditAction.CHECKOUT_SESSION_CREATED,
        actor=actor,
        org_id=org_id,
        target_type="organization",
        target_id=org_id,
        details=details,
    )
    return CheckoutStarted(url=url, mode=chosen)
