"""HTTP routes of API.md *Billing*. Thin: dependencies in, one service call, schema out.

Who may call: reading the subscription and usage needs owner, admin or billing; invoices
owner or billing; changes owner or billing. A non-member gets 404 (``org_access``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status

from aayu_accounts.audit.service import Actor
from aayu_accounts.billing.checkout import service as checkout_service
from aayu_accounts.billing.invoice import service as invoice_service
from aayu_accounts.billing.payment_provider.base import PaymentProvider
from aayu_accounts.billing.payment_provider.factory import get_provider
from aayu_accounts.billing.plan import service as plan_service
from aayu_accounts.billing.schemas import (
    CheckoutSessionIn,
    HostedSessionOut,
    InvoiceOut,
    MetricUsageOut,
    PlanEntitlementsOut,
    PlanOut,
    PortalSessionIn,
    PreviewIn,
    PreviewLineOut,
    PreviewOut,
    SubscriptionChangeOut,
    SubscriptionCreateIn,
    SubscriptionOut,
    SubscriptionPatchIn,
    UsageOut,
    WebhookAckOut,
)
from aayu_accounts.billing.stripe_webhook import service as webhook_service
from aayu_accounts.billing.subscription import service as subscription_service
from aayu_accounts.billing.subscription.proration import ChangePreview
from aayu_accounts.billing.usage import service as usage_service
from aayu_accounts.config import Settings
from aayu_accounts.db import ReadSession, WriteSession
from aayu_accounts.errors import PROBLEM_CONTENT_TYPE
from aayu_accounts.identity.deps import org_access
from aayu_accounts.identity.membership.service import OrgAccess
from aayu_accounts.identity.permissions import Permission
from aayu_accounts.models.plan import Plan
from aayu_accounts.models.subscription import Subscription


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    content = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {s: {"description": "Problem (RFC 9457)", "content": content} for s in statuses}


router = APIRouter(prefix="/api/v1", tags=["billing"])

ReadAccess = Annotated[OrgAccess, Depends(org_access(Permission.SUBSCRIPTION_READ))]
ManageAccess = Annotated[OrgAccess, Depends(org_access(Permission.SUBSCRIPTION_MANAGE))]
InvoiceAccess = Annotated[OrgAccess, Depends(org_access(Permission.INVOICES_READ))]
UsageAccess = Annotated[OrgAccess, Depends(org_access(Permission.USAGE_READ))]


def _provider(request: Request) -> PaymentProvider:
    settings: Settings = request.app.state.settings
    return get_provider(settings)


Provider = Annotated[PaymentProvider, Depends(_provider)]


def _plan_out(plan: Plan) -> PlanOut:
    return PlanOut(
        id=plan.id,
        name=plan.name,
        interval=plan.interval,
        amount_cents=plan.amount_cents,
        currency=plan.currency,
        per_seat=plan.per_seat,
        trial_days=plan.trial_days,
        entitlements=PlanEntitlementsOut(
            notes_per_seat_per_month=plan.notes_per_seat,
            max_seats=plan.max_seats,
            features=list(plan.features),
        ),
    )


def _sub_out(sub: Subscription) -> SubscriptionOut:
    return SubscriptionOut.model_validate(sub)


def _preview_out(preview: ChangePreview) -> PreviewOut:
    return PreviewOut(
        currency=preview.currency,
        lines=[
            PreviewLineOut(description=line.description, amount_cents=line.amount_cents)
            for line in preview.lines
        ],
        amount_due_now_cents=preview.amount_due_now_cents,
        next_invoice_cents=preview.next_invoice_cents,
        period_end=preview.period_end,
        resets_period=preview.resets_period,
    )


@router.get("/plans", response_model=list[PlanOut])
async def list_plans(session: ReadSession) -> list[PlanOut]:
    return [_plan_out(plan) for plan in await plan_service.list_plans(session)]


@router.get(
    "/orgs/{org_id}/subscription", response_model=SubscriptionOut, responses=_problems(403, 404)
)
async def get_subscription(access: ReadAccess, session: ReadSession) -> SubscriptionOut:
    return _sub_out(
        await subscription_service.get_subscription(session, access.org_id, access.role)
    )


@router.post(
    "/orgs/{org_id}/subscription",
    response_model=SubscriptionOut,
    status_code=status.HTTP_201_CREATED,
    responses=_problems(402, 403, 404, 409, 422, 503),
)
async def create_subscription(
    body: SubscriptionCreateIn, access: ManageAccess, session: WriteSession, provider: Provider
) -> SubscriptionOut:
    """Subscribe. 402 ``payment_failed``: declined, nothing created. 409 ``subscription_exists``."""
    sub = await subscription_service.create_subscription(
        session,
        provider,
        actor=Actor.user(access.user_id),
        role=access.role,
        org_id=access.org_id,
        plan_id=body.plan_id,
        seats=body.seats,
        payment_method=body.payment_method,
        trial=body.trial,
    )
    return _sub_out(sub)


@router.patch(
    "/orgs/{org_id}/subscription",
    response_model=SubscriptionChangeOut,
    responses=_problems(402, 403, 404, 409, 422, 503),
)
async def change_subscription(
    body: SubscriptionPatchIn, access: ManageAccess, session: WriteSession, provider: Provider
) -> SubscriptionChangeOut:
    """Change seats or plan (prorated and invoiced at once), cancel at period end or resume,
    or replace the payment method. Preview the amounts first with ``.../subscription/preview``."""
    sub, applied = await subscription_service.change_subscription(
        session,
        provider,
        actor=Actor.user(access.user_id),
        role=access.role,
        org_id=access.org_id,
        plan_id=body.plan_id,
        seats=body.seats,
        cancel_at_period_end=body.cancel_at_period_end,
        payment_method=body.payment_method,
    )
    out = SubscriptionChangeOut.model_validate(sub)
    out.proration = _preview_out(applied) if applied else None
    return out


@router.post(
    "/orgs/{org_id}/subscription/preview",
    response_model=PreviewOut,
    responses=_problems(403, 404, 409, 422),
)
async def preview_change(body: PreviewIn, access: ManageAccess, session: ReadSession) -> PreviewOut:
    """The invoice preview of a plan or seat change: what is due now and at renewal."""
    planned = await subscription_service.preview(
        session, role=access.role, org_id=access.org_id, plan_id=body.plan_id, seats=body.seats
    )
    return _preview_out(planned.preview)


@router.get(
    "/orgs/{org_id}/invoices", response_model=list[InvoiceOut], responses=_problems(403, 404)
)
async def list_invoices(access: InvoiceAccess, session: ReadSession) -> list[InvoiceOut]:
    return [
        InvoiceOut.model_validate(invoice)
        for invoice in await invoice_service.list_for_org(session, access.org_id)
    ]


@router.get("/orgs/{org_id}/usage", response_model=UsageOut, responses=_problems(403, 404))
async def get_usage(access: UsageAccess, session: ReadSession) -> UsageOut:
    summary = await usage_service.usage_summary(session, access.org_id)
    return UsageOut(
        period_start=summary.period_start,
        period_end=summary.period_end,
        metrics={
            name: MetricUsageOut(used=m.used, included=m.included)
            for name, m in summary.metrics.items()
        },
    )


@router.post(
    "/orgs/{org_id}/billing/portal-session",
    response_model=HostedSessionOut,
    responses=_problems(403, 404, 409, 422, 503),
)
async def create_portal_session(
    body: PortalSessionIn, access: ManageAccess, session: WriteSession, provider: Provider
) -> HostedSessionOut:
    """A Stripe customer portal session for the clinic (invoices, cards, cancel). 404
    ``no_subscription`` without a Stripe customer; 409 ``not_supported_by_provider`` with the
    ``local`` provider; 422 ``invalid_return_url`` off this service's public URL."""
    url = await checkout_service.create_portal_session(
        session,
        provider,
        actor=Actor.user(access.user_id),
        role=access.role,
        org_id=access.org_id,
        return_url=body.return_url,
    )
    return HostedSessionOut(url=url)


@router.post(
    "/orgs/{org_id}/billing/checkout-session",
    response_model=HostedSessionOut,
    responses=_problems(403, 404, 409, 422, 503),
)
async def create_checkout_session(
    body: CheckoutSessionIn, access: ManageAccess, session: WriteSession, provider: Provider
) -> HostedSessionOut:
    """A Stripe Checkout session: ``subscription`` mode subscribes (409 ``subscription_exists``
    with a live subscription), ``setup`` mode saves a payment method (404 ``no_subscription``
    without a Stripe customer). The result arrives by webhook (``checkout.session.completed``).
    409 ``not_supported_by_provider`` with the ``local`` provider."""
    started = await checkout_service.create_checkout_session(
        session,
        provider,
        actor=Actor.user(access.user_id),
        role=access.role,
        org_id=access.org_id,
        mode=body.mode,
        plan_id=body.plan_id,
        seats=body.seats,
        trial=body.trial,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
    )
    return HostedSessionOut(url=started.url)


@router.post("/webhooks/stripe", response_model=WebhookAckOut, responses=_problems(400))
async def stripe_webhook(request: Request, session: WriteSession) -> WebhookAckOut:
    """Stripe's events: verified on the raw body, stored once, processed in a job."""
    settings: Settings = request.app.state.settings
    secrets = [s.strip() for s in (settings.stripe_webhook_secret or "").split(",") if s.strip()]
    raw = await request.body()
    event = webhook_service.verify(raw, request.headers.get("stripe-signature"), secrets)
    stored = await webhook_service.receive(session, event)
    return WebhookAckOut(received=True, duplicate=not stored)
