"""The ``stripe`` provider: the official SDK (stripe-python 16.1.0, pinned in pyproject).

* Every mutating call carries an idempotency key derived from our operation id
  (``{op_id}:{step}``), so a retried operation (ours or tenacity's) is applied once.
* Calls go through ``kit.resilience``'s Stripe dependency: a timeout per attempt, tenacity
  retries with jittered backoff for network errors and 5xx only (never a 4xx such as a
  declined card), and a pybreaker circuit breaker (open: 503 at once). The SDK's own retries
  are off so there is one retry policy.
* Stripe objects are not dicts since stripe-python 15: attributes, ``in`` and ``to_dict()``.
* Plans are sold as legacy Plans with our plan id (``aayu_<plan id>``), which both Stripe and
  the ``localstripe`` stand-in understand; ``AAYU_STRIPE_API_BASE`` points the SDK at the
  stand-in in tests.
* Hosted pages: customer portal sessions (``billing_portal.sessions``) and Checkout sessions
  (``checkout.sessions``, mode ``subscription`` to subscribe, ``setup`` to save a payment
  method); what the customer does there comes back by webhook (``checkout.session.completed``,
  ``customer.subscription.*``, ``customer.updated``).
* Prorations: the subscription item is updated with Stripe's default proration
  (``create_prorations``), then the pending proration items are invoiced and paid at once.
  If that charge fails, the item change is reverted and the invoice voided (402, no change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import stripe

from aayu_accounts.billing.payment_provider.base import (
    CheckoutRequest,
    DuplicateCancellation,
    InvoiceState,
    PaymentDeclined,
    PriceSpec,
    ProviderRefused,
    SubscriptionState,
)
from aayu_accounts.config import Settings
from aayu_accounts.kit.resilience import STRIPE, dependency

T = TypeVar("T")

ENDED = frozenset({"canceled", "incomplete_expired"})
# Set on a subscription we cancel as a clinic's duplicate (before anything else is done to it),
# so a retry after a lost answer knows the cancellation was ours, and Stripe's dashboard says why.
DUPLICATE_MARK = "aayu_duplicate_of"
# How often a create whose idempotency key is in flight elsewhere is tried (Stripe: 409).
IN_FLIGHT_ATTEMPTS = 5


def is_transient(exc: BaseException) -> bool:
    """Retry network failures and Stripe's 5xx; never a 4xx (it would repeat the refusal)."""
    if isinstance(exc, stripe.APIConnectionError):
        return True
    if isinstance(exc, stripe.StripeError):
        return (exc.http_status or 0) >= 500
    return isinstance(exc, TimeoutError | ConnectionError)


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(int(value), UTC)


def field_of(obj: Any, name: str) -> Any:
    """An attribute of a StripeObject that may be absent (objects are not dicts any more)."""
    # Not obj.get(): StripeObject.get raises since stripe-python 15 (objects are not dicts).
    return obj[name] if name in obj else None  # noqa: SIM401


def plan_key(plan_id: str) -> str:
    return f"aayu_{plan_id}"


def invoice_state(invoice: Any) -> InvoiceState:
    lines = field_of(invoice, "lines")
    line_periods = [line.period for line in lines.data] if lines is not None else []
    start = _ts(field_of(invoice, "period_start")) or _ts(invoice.created)
    end = _ts(field_of(invoice, "period_end")) or start
    if line_periods:
        start = _ts(min(p.start for p in line_periods)) or start
        end = _ts(max(p.end for p in line_periods)) or end
    assert start is not None
    assert end is not None
    transitions = field_of(invoice, "status_transitions")
    paid_at = _ts(field_of(transitions, "paid_at")) if transitions is not None else None
    return InvoiceState(
        provider_invoice_id=invoice.id,
        status=str(invoice.status),
        billing_reason=str(field_of(invoice, "billing_reason") or "manual"),
        amount_cents=int(field_of(invoice, "amount_due") or 0),
        currency=str(invoice.currency),
        period_start=start,
        period_end=end,
        hosted_url=field_of(invoice, "hosted_invoice_url"),
        attempt_count=int(field_of(invoice, "attempt_count") or 0),
        paid_at=paid_at,
    )


def subscription_state(sub: Any) -> SubscriptionState:
    """Map a Stripe Subscription (API response or webhook payload) to our terms."""
    item = sub["items"].data[0]
    price = field_of(item, "price") or field_of(item, "plan")
    price_id = price.id if price is not None and not isinstance(price, str) else str(price)
    # API 2025-03-31 moved the period to the items; the stand-in keeps it on the subscription.
    start = field_of(sub, "current_period_start") or field_of(item, "current_period_start")
    end = field_of(sub, "current_period_end") or field_of(item, "current_period_end")
    latest = field_of(sub, "latest_invoice")
    invoices = (
        (invoice_state(latest),) if latest is not None and not isinstance(latest, str) else ()
    )
    customer = sub.customer if isinstance(sub.customer, str) else sub.customer.id
    payment_method = field_of(sub, "default_payment_method")
    period_start, period_end = _ts(start), _ts(end)
    assert period_start is not None
    assert period_end is not None
    return SubscriptionState(
        provider_subscription_id=sub.id,
        customer_id=customer,
        status=str(sub.status),
        plan_id=price_id.removeprefix("aayu_"),
        seats=int(field_of(item, "quantity") or 1),
        current_period_start=period_start,
        current_period_end=period_end,
        cancel_at_period_end=bool(field_of(sub, "cancel_at_period_end")),
        trial_end=_ts(field_of(sub, "trial_end")),
        canceled_at=_ts(field_of(sub, "canceled_at")),
        payment_method=payment_method if isinstance(payment_method, str) else None,
        invoices=invoices,
    )


def _id_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value.id)


class _HTTPXClient(stripe.HTTPXClient):
    """stripe-python 16.1.0 hands httpx the encoded form body as ``data=``, which httpx
    deprecates for raw bytes (a DeprecationWarning per call); send it as ``content=``.
    Overrides a private hook of the pinned SDK version: re-check when upgrading."""

    def _get_request_args_kwargs(  # type: ignore[no-untyped-def]
        self, method: str, url: str, headers: Any, post_data: Any
    ):
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        body = kwargs.pop("data", None)
        if body:
            kwargs["content"] = body
        return args, kwargs


class StripeProvider:
    name = "stripe"

    def __init__(
        self, client: stripe.StripeClient, http_client: stripe.HTTPXClient | None = None
    ) -> None:
        self.client = client
        self._http_client = http_client

    async def aclose(self) -> None:
        """Close the connection pool (process shutdown, tests)."""
        if self._http_client is not None:
            await self._http_client.close_async()  # type: ignore[no-untyped-call]

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeProvider:
        if not settings.stripe_api_key:
            raise RuntimeError("AAYU_STRIPE_API_KEY is unset")
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        http_client = _HTTPXClient()
        client = stripe.StripeClient(
            settings.stripe_api_key,
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=0,
            http_client=http_client,
        )
        return cls(client, http_client)

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await dependency(STRIPE).call(operation, retry_if=is_transient)

    @staticmethod
    def _key(op_id: str, step: str) -> stripe.RequestOptions:
        return {"idempotency_key": f"aayu:{op_id}:{step}"}

    async def ensure_plan(self, price: PriceSpec, op_id: str) -> str:
        """The Stripe Plan for one of our plans, created on first use; returns its id."""
        key = plan_key(price.plan_id)
        v1 = self.client.v1
        try:
            found = await self._call(lambda: v1.plans.retrieve_async(key))
            return str(found.id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 404:
                raise
        product = await self._call(
            lambda: v1.products.create_async(
                {"name": price.name, "metadata": {"aayu_plan_id": price.plan_id}},
                self._key(op_id, f"product:{price.plan_id}"),
            )
        )
        created = await self._call(
            lambda: v1.plans.create_async(
                {
                    "id": key,
                    "amount": price.amount_cents,
                    "currency": price.currency,
                    "interval": price.interval,
                    "product": product.id,
                    "metadata": {"aayu_plan_id": price.plan_id},
                },
                self._key(op_id, f"plan:{price.plan_id}"),
            )
        )
        return str(created.id)

    async def _attach(self, customer_id: str, payment_method: str, op_id: str) -> None:
        v1 = self.client.v1
        try:
            await self._call(
                lambda: v1.payment_methods.attach_async(
                    payment_method,
                    {"customer": customer_id},
                    self._key(op_id, "attach"),
                )
            )
        except stripe.CardError as declined:
            raise PaymentDeclined(str(declined.code or "card_declined")) from None
        await self._call(
            lambda: v1.customers.update_async(
                customer_id,
                {"invoice_settings": {"default_payment_method": payment_method}},
                self._key(op_id, "default_pm"),
            )
        )

    async def create_subscription(
        self,
        *,
        org_id: str,
        price: PriceSpec,
        seats: int,
        payment_method: str | None,
        trial_days: int,
        now: datetime,
        op_id: str,
    ) -> SubscriptionState:
        v1 = self.client.v1
        plan_id = price.stripe_price_id or await self.ensure_plan(price, op_id)
        customer = await self._call(
            lambda: v1.customers.create_async(
                {"metadata": {"aayu_org_id": org_id}},
                self._key(op_id, "customer"),
            )
        )
        if payment_method is not None:
            await self._attach(customer.id, payment_method, op_id)
        params: dict[str, Any] = {
            "customer": customer.id,
            "items": [{"plan": plan_id, "quantity": seats}],
            "metadata": {"aayu_org_id": org_id},
            "expand": ["latest_invoice"],
        }
        if trial_days > 0:
            params["trial_period_days"] = trial_days
        try:
            sub = await self._call(
                lambda: v1.subscriptions.create_async(
                    params,  # type: ignore[arg-type]
                    self._key(op_id, "subscription"),
                )
            )
        except stripe.CardError as declined:
            raise PaymentDeclined(str(declined.code or "card_declined")) from None
        return replace(subscription_state(sub), payment_method=payment_method)

    async def _retrieve(self, subscription_id: str) -> Any:
        v1 = self.client.v1
        return await self._call(
            lambda: v1.subscriptions.retrieve_async(
                subscription_id,
                {"expand": ["latest_invoice"]},
            )
        )

    async def change_subscription(
        self,
        current: SubscriptionState,
        *,
        price: PriceSpec,
        seats: int,
        proration_cents: int,
        now: datetime,
        op_id: str,
    ) -> SubscriptionState:
        v1 = self.client.v1
        plan_id = price.stripe_price_id or await self.ensure_plan(price, op_id)
        sub = await self._retrieve(current.provider_subscription_id)
        item = sub["items"].data[0]
        old_plan = (field_of(item, "price") or field_of(item, "plan")).id
        old_quantity = int(item.quantity)

        async def update(plan: str, quantity: int, step: str) -> Any:
            return await self._call(
                lambda: v1.subscriptions.update_async(
                    current.provider_subscription_id,
                    {"items": [{"id": item.id, "plan": plan, "quantity": quantity}]},
                    self._key(op_id, step),
                )
            )

        await update(plan_id, seats, "update")
        invoices: tuple[InvoiceState, ...] = ()
        if sub.status != "trialing":
            invoice = await self._call(
                lambda: v1.invoices.create_async(
                    {
                        "customer": current.customer_id,
                        "subscription": current.provider_subscription_id,
                        "pending_invoice_items_behavior": "include",
                    },
                    self._key(op_id, "proration_invoice"),
                )
            )
            if invoice.status != "paid":
                try:
                    invoice = await self._call(
                        lambda: v1.invoices.pay_async(
                            invoice.id,
                            None,
                            self._key(op_id, "pay"),
                        )
                    )
                except stripe.CardError:
                    invoice = await v1.invoices.retrieve_async(invoice.id)
                if invoice.status != "paid" and int(field_of(invoice, "amount_due") or 0) > 0:
                    await self._call(
                        lambda: v1.invoices.void_invoice_async(
                            invoice.id,
                            None,
                            self._key(op_id, "void"),
                        )
                    )
                    await update(old_plan, old_quantity, "revert")
                    raise PaymentDeclined("card_declined")
            invoices = (invoice_state(invoice),)
        fresh = await self._retrieve(current.provider_subscription_id)
        return replace(subscription_state(fresh), invoices=invoices)

    async def set_cancel_at_period_end(
        self, current: SubscriptionState, *, cancel: bool, op_id: str
    ) -> SubscriptionState:
        v1 = self.client.v1
        sub = await self._call(
            lambda: v1.subscriptions.update_async(
                current.provider_subscription_id,
                {"cancel_at_period_end": cancel},
                self._key(op_id, "cancel_at_period_end"),
            )
        )
        return replace(subscription_state(sub), invoices=())

    async def update_payment_method(
        self, current: SubscriptionState, *, payment_method: str, now: datetime, op_id: str
    ) -> SubscriptionState:
        v1 = self.client.v1
        await self._attach(current.customer_id, payment_method, op_id)
        invoices: list[InvoiceState] = []
        if current.status in ("past_due", "unpaid", "incomplete"):
            # Stripe retries on its schedule; a new card is tried at once, as the portal does.
            open_invoices = await self._call(
                lambda: v1.invoices.list_async(
                    {"subscription": current.provider_subscription_id, "status": "open"}
                )
            )
            for invoice in open_invoices.data:
                try:
                    paid = await self._call(
                        lambda inv=invoice: v1.invoices.pay_async(  # type: ignore[misc]
                            inv.id, None, self._key(op_id, f"pay:{inv.id}")
                        )
                    )
                    invoices.append(invoice_state(paid))
                except stripe.CardError as declined:
                    raise PaymentDeclined(str(declined.code or "card_declined")) from None
        fresh = await self._retrieve(current.provider_subscription_id)
        state = subscription_state(fresh)
        return replace(state, payment_method=payment_method, invoices=tuple(invoices))

    async def renew(
        self, current: SubscriptionState, *, price: PriceSpec, now: datetime, op_id: str
    ) -> SubscriptionState:
        # Stripe renews by itself; this only re-reads what it did.
        fetched = await self.fetch_subscription(current.provider_subscription_id)
        return fetched or current

    async def fetch_subscription(self, provider_subscription_id: str) -> SubscriptionState | None:
        try:
            sub = await self._retrieve(provider_subscription_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise
        return subscription_state(sub)

    async def cancel_duplicate_subscription(
        self, provider_subscription_id: str, *, keep_subscription_id: str, op_id: str
    ) -> DuplicateCancellation:
        """Mark (metadata), refund the latest invoice's payment, then cancel at once with
        ``prorate=false`` and ``invoice_now=false``: the refund gives everything back, so a
        proration credit would pay the clinic twice. Every step carries a key derived from
        ``op_id`` and is skipped when a previous attempt already did it."""
        v1 = self.client.v1
        sub_id = provider_subscription_id
        try:
            sub = await self._retrieve(sub_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return DuplicateCancellation(sub_id, canceled=False)
            raise
        metadata = field_of(sub, "metadata")
        ours = metadata is not None and DUPLICATE_MARK in metadata
        ended = str(sub.status) in ENDED
        if ended and not ours:
            # Ended for another reason (the clinic, Stripe): not ours to touch or refund.
            return DuplicateCancellation(sub_id, canceled=False)
        if not ours:
            await self._call(
                lambda: v1.subscriptions.update_async(
                    sub_id,
                    {"metadata": {DUPLICATE_MARK: keep_subscription_id}},
                    self._key(op_id, "mark"),
                )
            )
        refunded, currency = await self._refund_latest_invoice(sub, op_id)
        if not ended:
            try:
                await self._call(
                    lambda: v1.subscriptions.cancel_async(
                        sub_id,
                        {"invoice_now": False, "prorate": False},
                        self._key(op_id, "cancel"),
                    )
                )
            except stripe.InvalidRequestError:
                # Canceled meanwhile (an earlier attempt whose answer was lost): fine.
                fresh = await self.fetch_subscription(sub_id)
                if fresh is None or fresh.status not in ENDED:
                    raise
        return DuplicateCancellation(
            sub_id, canceled=True, refunded_cents=refunded, currency=currency
        )

    async def _refund_latest_invoice(self, sub: Any, op_id: str) -> tuple[int, str]:
        """Refund what the latest invoice collected (unless already refunded); returns the
        amount refunded in total and the currency."""
        v1 = self.client.v1
        invoice = field_of(sub, "latest_invoice")
        if invoice is None or isinstance(invoice, str):
            return 0, "usd"
        currency = str(invoice.currency)
        paid = int(field_of(invoice, "amount_paid") or 0)
        if invoice.status != "paid" or paid <= 0:
            return 0, currency
        charge_id = await self._charge_of(invoice)
        if charge_id is None:
            return 0, currency
        charge = await self._call(lambda: v1.charges.retrieve_async(charge_id))
        already = int(field_of(charge, "amount_refunded") or 0)
        if already >= paid:
            return already, currency
        await self._call(
            lambda: v1.refunds.create_async(
                {
                    "charge": charge_id,
                    "amount": paid - already,
                    "metadata": {
                        "aayu_reason": "duplicate_subscription",
                        "aayu_subscription_id": str(sub.id),
                    },
                },
                self._key(op_id, f"refund:{invoice.id}"),
            )
        )
        return paid, currency

    async def _charge_of(self, invoice: Any) -> str | None:
        """The charge that paid an invoice: ``charge``/``payment_intent`` on the invoice (API
        versions before 2025-03-31, localstripe), else its InvoicePayments (newer versions)."""
        v1 = self.client.v1
        charge = _id_or_none(field_of(invoice, "charge"))
        if charge is not None:
            return charge
        intent_id = _id_or_none(field_of(invoice, "payment_intent"))
        if intent_id is None:
            payments = await self._call(
                lambda: v1.invoice_payments.list_async({"invoice": str(invoice.id)})
            )
            for payment in payments.data:
                detail = field_of(payment, "payment")
                if detail is None or field_of(payment, "status") != "paid":
                    continue
                charge = _id_or_none(field_of(detail, "charge"))
                if charge is not None:
                    return charge
                intent_id = _id_or_none(field_of(detail, "payment_intent"))
                if intent_id is not None:
                    break
        if intent_id is None:
            return None
        intent = await self._call(lambda: v1.payment_intents.retrieve_async(intent_id))
        return _id_or_none(field_of(intent, "latest_charge"))

    async def create_portal_session(self, *, customer_id: str, return_url: str, op_id: str) -> str:
        v1 = self.client.v1
        try:
            created = await self._call(
                lambda: v1.billing_portal.sessions.create_async(
                    {"customer": customer_id, "return_url": return_url},
                    self._key(op_id, "portal_session"),
                )
            )
        except stripe.InvalidRequestError as refused:
            raise ProviderRefused(str(refused.code or "invalid_request")) from None
        return str(created.url)

    async def create_checkout_session(self, request: CheckoutRequest, *, op_id: str) -> str:
        v1 = self.client.v1
        metadata = {"aayu_org_id": request.org_id}
        params: dict[str, Any] = {
            "mode": request.mode,
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "client_reference_id": request.org_id,
            "metadata": metadata,
        }
        if request.customer_id is not None:
            params["customer"] = request.customer_id
        if request.mode == "subscription":
            if request.price is None:
                raise ValueError("a subscription Checkout needs a price")
            price = request.price
            plan_id = price.stripe_price_id or await self.ensure_plan(price, op_id)
            # A legacy Plan id is accepted wherever a Price id is (Stripe's compatibility).
            params["line_items"] = [{"price": plan_id, "quantity": request.seats}]
            subscription_data: dict[str, Any] = {"metadata": metadata}
            if request.trial_days > 0:
                subscription_data["trial_period_days"] = request.trial_days
            params["subscription_data"] = subscription_data
        else:
            # Setup mode needs the method types (or a currency) to know what to offer.
            params["payment_method_types"] = ["card"]
            params["setup_intent_data"] = {"metadata": metadata}
        for attempt in range(1, IN_FLIGHT_ATTEMPTS + 1):
            try:
                created = await self._call(
                    lambda: v1.checkout.sessions.create_async(
                        params,  # type: ignore[arg-type]
                        self._key(op_id, f"checkout:{request.mode}"),
                    )
                )
            except stripe.IdempotencyError:
                # The same Checkout is being created by a concurrent request (a double click):
                # once it is done, Stripe replays its session to this key too.
                if attempt == IN_FLIGHT_ATTEMPTS:
                    raise ProviderRefused("idempotency_error") from None
                await asyncio.sleep(0.2 * attempt)
                continue
            except stripe.InvalidRequestError as refused:
                raise ProviderRefused(str(refused.code or "invalid_request")) from None
            return str(created.url)
        raise AssertionError("unreachable")

    async def setup_payment_method(self, setup_intent_id: str) -> str | None:
        v1 = self.client.v1
        intent = await self._call(lambda: v1.setup_intents.retrieve_async(setup_intent_id))
        method = field_of(intent, "payment_method")
        if method is None:
            return None
        return method if isinstance(method, str) else str(method.id)
