"""Stripe's hosted pages over HTTP: ``POST .../billing/portal-session`` and
``.../billing/checkout-session``, with the real stripe SDK.

localstripe has neither endpoint; ``stripe_hosted_pages`` (tests/fixtures/stripe.py) is a
loopback HTTP server that answers those two as Stripe does, records the requests the SDK sent,
and passes every other call through to localstripe (customers, plans, subscriptions). With
the ``local`` provider both routes answer 409 ``not_supported_by_provider``.
"""

from __future__ import annotations

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from aayu_accounts.app import create_app
from aayu_accounts.config import PaymentProvider, Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.models.audit_event import AuditEvent
from tests.fixtures.stripe import HostedPagesStandIn
from tests.identity.accounts.helpers import invite_and_join, signed_up, unique_email


@pytest.fixture
def settings(settings: Settings, stripe_hosted_pages: HostedPagesStandIn) -> Settings:
    return settings.model_copy(
        update={
            "argon2_memory_kib": 1024,
            "argon2_time_cost": 1,
            "altcha_max_number": 5000,
            "payment_provider": PaymentProvider.STRIPE,
            "stripe_api_key": stripe_hosted_pages.api_key,
            "stripe_api_base": stripe_hosted_pages.base_url,
            "public_url": "https://accounts.clinic-example.org",
        }
    )


async def _actions(db: Database, org_id: str) -> list[str]:
    async with db.session_scope(write=False) as session:
        rows = await session.scalars(select(AuditEvent.action).where(AuditEvent.org_id == org_id))
        return list(rows)


async def test_checkout_then_portal_with_the_stripe_sdk(
    client: httpx.AsyncClient, db: Database, stripe_hosted_pages: HostedPagesStandIn
) -> None:
    owner = await signed_up(client, db)
    billing = await invite_and_join(client, db, owner, "billing")
    admin = await invite_and_join(client, db, owner, "admin")
    outsider = await signed_up(client, db, email=unique_email("outsider"))
    base = f"/api/v1/orgs/{owner.org_id}/billing"
    sent = stripe_hosted_pages.requests

    # No subscription yet: Checkout subscribes (the default mode), the portal has no customer.
    response = await client.post(f"{base}/portal-session", json={}, headers=owner.auth)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "no_subscription"
    body = {"plan_id": "clinic_monthly", "seats": 2}
    assert (
        await client.post(f"{base}/checkout-session", json=body, headers=admin.auth)
    ).status_code == 403
    response = await client.post(f"{base}/checkout-session", json=body, headers=outsider.auth)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    response = await client.post(
        f"{base}/checkout-session",
        json={**body, "success_url": "https://evil.example/steal"},
        headers=owner.auth,
    )
    assert (response.status_code, response.json()["code"]) == (422, "invalid_return_url")
    assert not [r for r in sent if r.path == "/v1/checkout/sessions"]

    response = await client.post(f"{base}/checkout-session", json=body, headers=billing.auth)
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    checkout = sent[-1]
    assert checkout.path == "/v1/checkout/sessions"
    form = checkout.form
    assert form["mode"] == "subscription"
    assert form["client_reference_id"] == owner.org_id
    assert form["metadata[aayu_org_id]"] == owner.org_id
    assert form["subscription_data[metadata][aayu_org_id]"] == owner.org_id
    assert form["subscription_data[trial_period_days]"] == "14"
    assert form["line_items[0][price]"] == "aayu_clinic_monthly"  # created in Stripe first
    assert form["line_items[0][quantity]"] == "2"
    assert form["success_url"] == (
        f"https://accounts.clinic-example.org/orgs/{owner.org_id}/billing?checkout=done"
    )
    assert "customer" not in form  # Checkout creates the customer
    assert checkout.idempotency_key is not None
    assert checkout.idempotency_key.startswith("aayu:")

    # Subscribed through the API instead: Checkout now saves a payment method (setup mode)
    # for the clinic's Stripe customer, and a second subscription Checkout is refused.
    response = await client.post(
        f"/api/v1/orgs/{owner.org_id}/subscription",
        json={**body, "payment_method": "pm_card_visa", "trial": False},
        headers=owner.auth,
    )
    assert response.status_code == 201, response.text
    response = await client.post(
        f"{base}/checkout-session", json={"mode": "subscription", **body}, headers=owner.auth
    )
    assert (response.status_code, response.json()["code"]) == (409, "subscription_exists")
    response = await client.post(f"{base}/checkout-session", json={}, headers=owner.auth)
    assert response.status_code == 200, response.text
    setup = sent[-1].form
    assert setup["mode"] == "setup"
    assert setup["customer"].startswith("cus_")
    assert setup["payment_method_types[0]"] == "card"
    assert setup["setup_intent_data[metadata][aayu_org_id]"] == owner.org_id

    # The portal: for the same customer, back to our billing page (or a page of ours).
    response = await client.post(f"{base}/portal-session", json={}, headers=billing.auth)
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith("https://billing.stripe.com/p/session/")
    portal = sent[-1]
    assert portal.path == "/v1/billing_portal/sessions"
    assert portal.form["customer"] == setup["customer"]
    assert portal.form["return_url"] == (
        f"https://accounts.clinic-example.org/orgs/{owner.org_id}/billing"
    )
    assert portal.idempotency_key is not None
    own_page = "https://accounts.clinic-example.org/console/clinic"
    response = await client.post(
        f"{base}/portal-session", json={"return_url": own_page}, headers=owner.auth
    )
    assert response.status_code == 200
    assert sent[-1].form["return_url"] == own_page
    assert (
        await client.post(f"{base}/portal-session", json={}, headers=admin.auth)
    ).status_code == 403
    # Stripe refuses (no portal configuration saved in the dashboard): 409, not a 500.
    stripe_hosted_pages.refuse_portal[0] = True
    response = await client.post(f"{base}/portal-session", json={}, headers=owner.auth)
    assert (response.status_code, response.json()["code"]) == (409, "payment_provider_refused")

    actions = await _actions(db, owner.org_id)
    assert actions.count("billing:checkout_session:created") == 2
    assert actions.count("billing:portal_session:created") == 2


async def test_local_provider_has_no_hosted_pages(
    db: Database, settings: Settings, keyring: Keyring
) -> None:
    """With ``local`` (an app of the same test settings but the embedded provider)."""
    local = create_app(
        settings.model_copy(update={"payment_provider": PaymentProvider.LOCAL}),
        database=db,
        keyring=keyring,
    )
    async with LifespanManager(local):
        transport = httpx.ASGITransport(app=local, client=("127.0.0.1", 40001))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            owner = await signed_up(http, db)
            base = f"/api/v1/orgs/{owner.org_id}"
            response = await http.post(
                f"{base}/subscription",
                json={"plan_id": "clinic_monthly", "seats": 1, "payment_method": "pm_card_visa"},
                headers=owner.auth,
            )
            assert response.status_code == 201, response.text
            for path, body in (
                ("billing/portal-session", {}),
                ("billing/checkout-session", {}),
                ("billing/checkout-session", {"mode": "setup"}),
            ):
                response = await http.post(f"{base}/{path}", json=body, headers=owner.auth)
                assert response.status_code == 409, (path, response.text)
                assert response.json()["code"] == "not_supported_by_provider"
