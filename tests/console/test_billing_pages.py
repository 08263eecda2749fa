"""Billing pages through the console (no browser): subscribe with a preview, a declined card,
changes with the service's proration preview, the admin's read-only view, dunning."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import update

from aayu_accounts.app import create_app
from aayu_accounts.config import PaymentProvider, Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.models.subscription import Subscription
from tests.console.helpers import csrf_of, submit
from tests.fixtures.stripe import HostedPagesStandIn
from tests.identity.accounts.helpers import Account, invite_and_join, signed_up


def as_browser(console: httpx.AsyncClient, account: Account) -> None:
    console.cookies.clear()
    console.cookies.set("aayu_session", account.token)


async def post_form(
    console: httpx.AsyncClient, html: str, action: str, fields: dict[str, str]
) -> httpx.Response:
    """Submit a form of an already loaded page (its CSRF token)."""
    return await console.post(
        action,
        data={"csrf_token": csrf_of(html), **fields},
        headers={"Origin": "https://testserver"},
    )


async def test_owner_previews_then_subscribes_and_sees_the_invoice(
    console: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(console, db)
    as_browser(console, owner)
    page = await console.get("/billing")
    assert page.status_code == 200, page.headers.get("location")
    assert 'id="no-subscription"' in page.text
    assert "pm_card_visa" in page.text  # the local provider's test card ids are offered

    review = await submit(
        console,
        "/billing",
        "/billing/subscribe/review",
        {"plan_id": "clinic_monthly", "seats": "2", "payment_method": "pm_card_visa"},
    )
    assert review.status_code == 200, review.text
    assert 'id="invoice-preview"' in review.text
    assert 'id="due-now">$78.00<' in review.text  # 2 seats x $39, no trial asked for
    # Nothing exists until the preview is confirmed.
    api = await console.get(f"/api/v1/orgs/{owner.org_id}/subscription", headers=owner.auth)
    assert api.status_code == 404

    done = await post_form(
        console,
        review.text,
        "/billing/subscribe",
        {"plan_id": "clinic_monthly", "seats": "2", "payment_method": "pm_card_visa"},
    )
    assert done.status_code == 303, done.text
    page = await console.get("/billing")
    assert 'id="sub-status">active<' in page.text
    assert 'id="current-seats">2<' in page.text
    assert 'id="invoices"' in page.text
    assert "$78.00" in page.text
    assert ">paid<" in page.text
    assert "Notes this period" in page.text  # the usage chart (SVG)
    assert "<svg" in page.text


async def test_a_declined_card_shows_the_error_and_creates_nothing(
    console: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(console, db)
    as_browser(console, owner)
    response = await submit(
        console,
        "/billing",
        "/billing/subscribe",
        {"plan_id": "solo_monthly", "seats": "1", "payment_method": "pm_card_chargeDeclined"},
    )
    assert response.status_code == 402
    assert 'data-code="payment_failed"' in response.text
    assert "Decline code: card_declined. Nothing was charged" in response.text
    api = await console.get(f"/api/v1/orgs/{owner.org_id}/subscription", headers=owner.auth)
    assert api.status_code == 404
    assert api.json()["code"] == "no_subscription"


async def test_seat_change_shows_the_services_preview_before_applying(
    console: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(console, db)
    as_browser(console, owner)
    await submit(
        console,
        "/billing",
        "/billing/subscribe",
        {"plan_id": "clinic_monthly", "seats": "1", "payment_method": "pm_card_visa"},
    )
    review = await submit(
        console, "/billing", "/billing/change/review", {"plan_id": "clinic_monthly", "seats": "3"}
    )
    assert review.status_code == 200, review.text
    assert 'id="due-now"' in review.text
    assert 'id="current-seats">1<' in review.text  # not applied yet
    done = await post_form(
        console, review.text, "/billing/change", {"plan_id": "clinic_monthly", "seats": "3"}
    )
    assert done.status_code == 303, done.text
    assert 'id="current-seats">3<' in (await console.get("/billing")).text

    canceled = await submit(console, "/billing", "/billing/cancel", {})
    assert canceled.status_code == 303
    page = await console.get("/billing")
    assert "Keep the subscription" in page.text
    resumed = await post_form(console, page.text, "/billing/cancel", {"resume": "1"})
    assert resumed.status_code == 303
    assert "Cancel at period end" in (await console.get("/billing")).text

    changed = await submit(
        console, "/billing", "/billing/payment-method", {"payment_method": "pm_card_mastercard"}
    )
    assert changed.status_code == 303, changed.text
    page = await console.get("/billing")
    assert 'id="current-payment-method">pm_card_mastercard<' in page.text
    declined = await post_form(
        console, page.text, "/billing/payment-method", {"payment_method": "pm_card_chargeDeclined"}
    )
    assert declined.status_code == 402
    assert "Nothing was charged and nothing was changed" in declined.text


async def test_admin_reads_without_invoices_or_forms_and_cannot_change(
    console: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(console, db)
    as_browser(console, owner)
    await submit(
        console,
        "/billing",
        "/billing/subscribe",
        {"plan_id": "clinic_monthly", "seats": "2", "payment_method": "pm_card_visa"},
    )
    console.cookies.clear()
    admin = await invite_and_join(console, db, owner, "admin")
    as_browser(console, admin)
    page = await console.get("/billing")
    assert page.status_code == 200, page.text
    assert 'id="current-seats">2<' in page.text
    assert 'id="invoices"' not in page.text
    assert "/billing/change/review" not in page.text
    refused = await post_form(console, page.text, "/billing/cancel", {})
    assert refused.status_code == 403


async def test_clinician_cannot_open_billing(console: httpx.AsyncClient, db: Database) -> None:
    owner = await signed_up(console, db)
    clinician = await invite_and_join(console, db, owner, "clinician")
    as_browser(console, clinician)
    assert (await console.get("/billing")).status_code == 403


async def test_past_due_shows_the_dunning_banner(console: httpx.AsyncClient, db: Database) -> None:
    owner = await signed_up(console, db)
    as_browser(console, owner)
    await submit(
        console,
        "/billing",
        "/billing/subscribe",
        {"plan_id": "solo_monthly", "seats": "1", "payment_method": "pm_card_visa"},
    )
    assert 'id="dunning-banner"' not in (await console.get("/billing")).text
    async with db.session_scope() as session:  # as a failed renewal would leave it
        await session.execute(
            update(Subscription)
            .where(Subscription.org_id == owner.org_id)
            .values(status="past_due")
        )
    page = await console.get("/billing")
    assert 'id="dunning-banner"' in page.text
    assert "Update the payment method below" in page.text


async def test_with_stripe_the_page_sends_the_clinic_to_checkout_and_the_portal(
    db: Database,
    settings: Settings,
    keyring: Keyring,
    stripe_hosted_pages: HostedPagesStandIn,
) -> None:
    stripe_app = create_app(
        settings.model_copy(
            update={
                "payment_provider": PaymentProvider.STRIPE,
                "stripe_api_key": stripe_hosted_pages.api_key,
                "stripe_api_base": stripe_hosted_pages.base_url,
                "public_url": "https://testserver",
            }
        ),
        database=db,
        keyring=keyring,
    )
    async with LifespanManager(stripe_app):
        transport = httpx.ASGITransport(app=stripe_app, client=("127.0.0.1", 40002))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as web:
            owner = await signed_up(web, db)
            as_browser(web, owner)
            page = await web.get("/billing")
            assert page.status_code == 200, page.text
            assert "pm_card_visa" not in page.text  # no card field: cards go to Stripe only
            assert 'action="/billing/stripe/checkout"' in page.text
            checkout = await post_form(
                web,
                page.text,
                "/billing/stripe/checkout",
                {"plan_id": "clinic_monthly", "seats": "2"},
            )
            assert checkout.status_code == 303, checkout.text
            assert checkout.headers["location"].startswith("https://checkout.stripe.com/")
            sent = stripe_hosted_pages.requests[-1]
            assert sent.path == "/v1/checkout/sessions"
            assert sent.form["success_url"] == "https://testserver/billing?checkout=done"
            # Without a Stripe customer yet, the portal says so on the page.
            portal = await post_form(web, page.text, "/billing/stripe/portal", {})
            assert portal.status_code == 404
            assert 'data-code="no_subscription"' in portal.text
            subscribed = await web.post(
                f"/api/v1/orgs/{owner.org_id}/subscription",
                json={"plan_id": "clinic_monthly", "seats": 1, "payment_method": "pm_card_visa"},
                headers={**owner.auth, "Origin": "https://testserver"},
            )
            assert subscribed.status_code == 201, subscribed.text
            page = await web.get("/billing")
            assert 'action="/billing/stripe/portal"' in page.text
            portal = await post_form(web, page.text, "/billing/stripe/portal", {})
            assert portal.status_code == 303, portal.text
            assert portal.headers["location"].startswith("https://billing.stripe.com/")
            back = await web.get(f"/orgs/{owner.org_id}/billing")
            assert (back.status_code, back.headers["location"]) == (303, "/billing")
