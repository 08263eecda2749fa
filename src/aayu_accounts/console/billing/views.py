"""Billing pages: plan and seats with an invoice preview before confirming, the payment method,
invoices, usage against the quota, and the dunning banner.

Who: owner and billing change billing; admin reads the plan, seats and usage (no invoices,
as in the API's permission matrix). Everything goes through the billing services the API uses,
which check the role again and audit every change; a declined card (402 ``payment_failed``)
creates nothing, and the page says so next to the form.

Payment method: with the ``local`` provider, a form taking Stripe's test payment-method ids
(``pm_card_visa``, ``pm_card_chargeDeclined`` ...); with ``stripe``, Stripe's hosted pages
(Checkout to subscribe, the customer portal to manage) when the provider offers them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.service import Actor
from aayu_accounts.billing.checkout import service as checkout_service
from aayu_accounts.billing.checkout.service import CheckoutStarted, offers_hosted_pages
from aayu_accounts.billing.errors import NoSubscription
from aayu_accounts.billing.invoice import service as invoice_service
from aayu_accounts.billing.payment_provider.factory import get_provider
from aayu_accounts.billing.plan import service as plan_service
from aayu_accounts.billing.schemas import PreviewIn, SubscriptionCreateIn, SubscriptionPatchIn
from aayu_accounts.billing.subscription import service as subscription_service
from aayu_accounts.billing.subscription.proration import ChangePreview
from aayu_accounts.billing.usage import service as usage_service
from aayu_accounts.billing.usage.service import UsageSummary
from aayu_accounts.config import Settings
from aayu_accounts.console.charts import goal_chart
from aayu_accounts.console.forms import FormError, parse
from aayu_accounts.console.page import (
    ConsoleContext,
    SignedInPage,
    attempt,
    org_access,
    read,
    read_form,
    redirect,
    render,
    roles_page,
    set_org_cookie,
)
from aayu_accounts.errors import AppError, NotFound
from aayu_accounts.identity.membership.service import OrgAccess
from aayu_accounts.identity.permissions import Permission, allowed
from aayu_accounts.models.subscription import Subscription

router = APIRouter()

BillingPage = Annotated[ConsoleContext, Depends(roles_page("owner", "admin", "billing"))]

# Stripe's test payment methods the local provider understands (API.md, *Billing*).
TEST_PAYMENT_METHODS = (
    ("pm_card_visa", "Visa (succeeds)"),
    ("pm_card_mastercard", "Mastercard (succeeds)"),
    ("pm_card_chargeDeclined", "Declined card"),
    ("pm_card_chargeDeclinedInsufficientFunds", "Declined: insufficient funds"),
    ("pm_card_authenticationRequired", "Needs authentication (incomplete)"),
)
DUNNING = frozenset({"past_due", "unpaid"})


def money(cents: int, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency.lower())
    amount = f"{abs(cents) / 100:,.2f}"
    sign = "-" if cents < 0 else ""
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency.upper()}"


class _CopiedRow:
    """A frozen copy of an ORM row's fields of the same names (the page renders after the unit
    of work has ended, when the rows may no longer be read)."""

    @classmethod
    def of(cls, row: Any) -> Self:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class PlanRow(_CopiedRow):
    id: str
    name: str
    interval: str
    amount_cents: int
    currency: str
    per_seat: bool
    trial_days: int

    def total(self, seats: int) -> int:
        """The same sum as the subscription service's ``total_of``."""
        return self.amount_cents * (seats if self.per_seat else 1)


@dataclass(frozen=True)
class SubscriptionRow(_CopiedRow):
    plan_id: str
    status: str
    seats: int
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool
    trial_end: datetime | None
    payment_method: str | None


@dataclass(frozen=True)
class InvoiceRow(_CopiedRow):
    id: str
    status: str
    billing_reason: str
    amount_cents: int
    currency: str
    period_start: datetime
    period_end: datetime
    created_at: datetime


@dataclass
class BillingView:
    """What the page shows, copied out of the unit of work (rows are not used after it)."""

    plans: list[PlanRow]
    subscription: SubscriptionRow | None
    plan: PlanRow | None
    invoices: list[InvoiceRow] | None  # None: the role may not read invoices
    usage: UsageSummary | None


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _provider_name(request: Request) -> str:
    return str(_settings(request).payment_provider.value)


async def _load(request: Request, access: OrgAccess) -> BillingView:
    async def work(session: AsyncSession) -> BillingView:
        plans = [PlanRow.of(p) for p in await plan_service.list_plans(session)]
        try:
            sub: SubscriptionRow | None = SubscriptionRow.of(
                await subscription_service.get_subscription(session, access.org_id, access.role)
            )
        except NoSubscription:
            sub = None
        invoices = None
        if allowed(access.role, Permission.INVOICES_READ):
            invoices = [
                InvoiceRow.of(i) for i in await invoice_service.list_for_org(session, access.org_id)
            ]
        usage = None
        if sub is not None and allowed(access.role, Permission.USAGE_READ):
            usage = await usage_service.usage_summary(session, access.org_id)
        plan = next((p for p in plans if sub is not None and p.id == sub.plan_id), None)
        return BillingView(plans, sub, plan, invoices, usage)

    return await read(request, work)


def _page(
    request: Request,
    ctx: ConsoleContext,
    access: OrgAccess,
    view: BillingView,
    *,
    error: FormError | None = None,
    form: dict[str, str] | None = None,
    review: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    usage_chart = None
    if view.usage is not None:
        notes = view.usage.metrics.get("notes")
        if notes is not None:
            usage_chart = goal_chart(
                notes.used,
                notes.included,
                title="Notes this period (used of included)",
                width=480,
            )
    sub = view.subscription
    return render(
        request,
        "billing/overview.html",
        {
            "view": view,
            "sub": sub,
            "can_manage": allowed(access.role, Permission.SUBSCRIPTION_MANAGE),
            "provider": _provider_name(request),
            "test_methods": TEST_PAYMENT_METHODS,
            "in_dunning": sub is not None and sub.status in DUNNING,
            "usage_chart": usage_chart,
            "money": money,
            "error": error,
            "form": form or {},
            "review": review,
            "stripe_hosted": offers_hosted_pages(get_provider(_settings(request))),
        },
        status_code=status_code,
    )


def _form_error(error: AppError, consequence: str) -> FormError:
    """The error for the page; a declined card says why and that nothing happened."""
    shown = FormError.of(error)
    if error.code == "payment_failed":
        code = str(error.extra.get("decline_code") or "card_declined")
        shown.details.append(f"Decline code: {code}. Nothing was charged and {consequence}.")
    return shown


async def _manage_access(request: Request, ctx: ConsoleContext) -> OrgAccess:
    return await org_access(request, ctx, Permission.SUBSCRIPTION_MANAGE)


@router.get("/billing")
async def billing_page(ctx: BillingPage, request: Request) -> Response:
    access = await org_access(request, ctx, Permission.SUBSCRIPTION_READ)
    return _page(request, ctx, access, await _load(request, access))


def _create_fields(form: dict[str, str]) -> dict[str, Any]:
    return {
        "plan_id": form.get("plan_id", ""),
        "seats": form.get("seats", "1") or "1",
        "payment_method": form.get("payment_method") or None,
        "trial": form.get("trial") == "on",
    }


@router.post("/billing/subscribe/review")
async def review_subscription(ctx: BillingPage, request: Request) -> Response:
    """The invoice preview of a new subscription: what is due today and at each renewal."""
    access = await _manage_access(request, ctx)
    form = await read_form(request)
    view = await _load(request, access)
    body = parse(SubscriptionCreateIn, _create_fields(form))
    if isinstance(body, AppError):
        return _page(
            request, ctx, access, view, error=FormError.of(body), form=form, status_code=422
        )
    plan = next((p for p in view.plans if p.id == body.plan_id), None)
    if plan is None:
        error = FormError("Choose one of the plans.", "unknown_plan", fields=["plan_id"])
        return _page(request, ctx, access, view, error=error, form=form, status_code=422)
    total = plan.total(body.seats)
    trial_days = plan.trial_days if body.trial and view.subscription is None else 0
    review = {
        "kind": "subscribe",
        "plan": plan,
        "seats": body.seats,
        "payment_method": body.payment_method or "",
        "trial": body.trial,
        "trial_days": trial_days,
        "due_now": 0 if trial_days else total,
        "recurring": total,
        "currency": plan.currency,
    }
    return _page(request, ctx, access, view, form=form, review=review)


@router.post("/billing/subscribe")
async def subscribe(ctx: BillingPage, request: Request) -> Response:
    access = await _manage_access(request, ctx)
    form = await read_form(request)
    body = parse(SubscriptionCreateIn, _create_fields(form))
    if not isinstance(body, AppError):
        provider = get_provider(_settings(request))
        checked = body

        async def work(session: AsyncSession) -> Subscription:
            return await subscription_service.create_subscription(
                session,
                provider,
                actor=Actor.user(access.user_id),
                role=access.role,
                org_id=access.org_id,
                plan_id=checked.plan_id,
                seats=checked.seats,
                payment_method=checked.payment_method,
                trial=checked.trial,
            )

        result = await attempt(request, work)
        if not isinstance(result, AppError):
            return redirect(request, "/billing", flash="subscribed")
        body = result
    view = await _load(request, access)
    return _page(
        request,
        ctx,
        access,
        view,
        error=_form_error(body, "no subscription was created"),
        form=form,
        status_code=body.status,
    )


def _change_fields(form: dict[str, str]) -> dict[str, Any]:
    """The plan and seats a form names (a change, or a Checkout); None where left blank."""
    return {"plan_id": form.get("plan_id") or None, "seats": form.get("seats") or None}


@router.post("/billing/change/review")
async def review_change(ctx: BillingPage, request: Request) -> Response:
    """The billing service's own preview of a plan or seat change (prorated)."""
    access = await _manage_access(request, ctx)
    form = await read_form(request)
    body = parse(PreviewIn, _change_fields(form))
    preview: ChangePreview | AppError
    if isinstance(body, AppError):
        preview = body
    else:
        checked = body

        async def work(session: AsyncSession) -> ChangePreview:
            planned = await subscription_service.preview(
                session,
                role=access.role,
                org_id=access.org_id,
                plan_id=checked.plan_id,
                seats=checked.seats,
            )
            return planned.preview

        try:
            preview = await read(request, work)
        except AppError as error:
            preview = error
    view = await _load(request, access)
    if isinstance(preview, AppError):
        return _page(
            request,
            ctx,
            access,
            view,
            error=FormError.of(preview),
            form=form,
            status_code=preview.status,
        )
    review = {
        "kind": "change",
        "preview": preview,
        "plan_id": form.get("plan_id", ""),
        "seats": form.get("seats", ""),
    }
    return _page(request, ctx, access, view, form=form, review=review)


async def _patch(
    request: Request, ctx: ConsoleContext, body: SubscriptionPatchIn | AppError, flash: str
) -> Response:
    access = await _manage_access(request, ctx)
    if not isinstance(body, AppError):
        provider = get_provider(_settings(request))
        checked = body

        async def work(session: AsyncSession) -> Subscription:
            sub, _applied = await subscription_service.change_subscription(
                session,
                provider,
                actor=Actor.user(access.user_id),
                role=access.role,
                org_id=access.org_id,
                plan_id=checked.plan_id,
                seats=checked.seats,
                cancel_at_period_end=checked.cancel_at_period_end,
                payment_method=checked.payment_method,
            )
            return sub

        result = await attempt(request, work)
        if not isinstance(result, AppError):
            return redirect(request, "/billing", flash=flash)
        body = result
    view = await _load(request, access)
    return _page(
        request,
        ctx,
        access,
        view,
        error=_form_error(body, "nothing was changed"),
        status_code=body.status,
    )


@router.post("/billing/change")
async def change(ctx: BillingPage, request: Request) -> Response:
    form = await read_form(request)
    return await _patch(
        request, ctx, parse(SubscriptionPatchIn, _change_fields(form)), "subscription_changed"
    )


@router.post("/billing/cancel")
async def cancel(ctx: BillingPage, request: Request) -> Response:
    form = await read_form(request)
    resume = form.get("resume") == "1"
    body = parse(SubscriptionPatchIn, {"cancel_at_period_end": not resume})
    return await _patch(
        request, ctx, body, "subscription_resumed" if resume else "subscription_canceled"
    )


@router.post("/billing/payment-method")
async def payment_method(ctx: BillingPage, request: Request) -> Response:
    form = await read_form(request)
    body = parse(SubscriptionPatchIn, {"payment_method": form.get("payment_method") or None})
    return await _patch(request, ctx, body, "payment_method_updated")


# --- Stripe's hosted pages (the ``stripe`` provider) -------------------------------------


def _own_page(request: Request, suffix: str = "") -> str:
    """This console's billing page on the public URL: where Stripe sends the clinic back."""
    return f"{_settings(request).public_url.rstrip('/')}/billing{suffix}"


async def _to_stripe(
    request: Request, ctx: ConsoleContext, access: OrgAccess, result: str | AppError
) -> Response:
    if isinstance(result, AppError):
        view = await _load(request, access)
        return _page(
            request, ctx, access, view, error=FormError.of(result), status_code=result.status
        )
    # Stripe's own page (the only place this console sends a browser off the service).
    return RedirectResponse(result, status_code=303)


@router.post("/billing/stripe/checkout")
async def stripe_checkout(ctx: BillingPage, request: Request) -> Response:
    """Subscribe on Stripe Checkout (no card data ever reaches this server)."""
    access = await _manage_access(request, ctx)
    form = await read_form(request)
    body = parse(PreviewIn, _change_fields(form))
    result: str | AppError
    if isinstance(body, AppError):
        result = body
    else:
        checked = body
        provider = get_provider(_settings(request))

        async def work(session: AsyncSession) -> CheckoutStarted:
            return await checkout_service.create_checkout_session(
                session,
                provider,
                actor=Actor.user(access.user_id),
                role=access.role,
                org_id=access.org_id,
                mode="subscription",
                plan_id=checked.plan_id,
                seats=checked.seats,
                success_url=_own_page(request, "?checkout=done"),
                cancel_url=_own_page(request, "?checkout=canceled"),
            )

        started = await attempt(request, work)
        result = started if isinstance(started, AppError) else started.url
    return await _to_stripe(request, ctx, access, result)


@router.post("/billing/stripe/portal")
async def stripe_portal(ctx: BillingPage, request: Request) -> Response:
    """Manage cards, invoices and cancellation on Stripe's customer portal."""
    access = await _manage_access(request, ctx)
    await read_form(request)
    provider = get_provider(_settings(request))

    async def work(session: AsyncSession) -> str:
        return await checkout_service.create_portal_session(
            session,
            provider,
            actor=Actor.user(access.user_id),
            role=access.role,
            org_id=access.org_id,
            return_url=_own_page(request),
        )

    return await _to_stripe(request, ctx, access, await attempt(request, work))


@router.get("/orgs/{org_id}/billing")
async def billing_link(ctx: SignedInPage, request: Request, org_id: str) -> Response:
    """The address billing emails and Stripe's default return use: that clinic's billing
    page (it becomes the current clinic). Another clinic's address is 404, as in the API: a
    redirect would tell the caller the clinic exists."""
    if not any(m.org_id == org_id for m in ctx.memberships):
        raise NotFound()
    response = redirect(request, "/billing")
    set_org_cookie(request, response, org_id)
    return response
