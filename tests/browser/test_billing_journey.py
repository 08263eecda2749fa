"""Billing in a real browser: an owner subscribes with ``pm_card_visa`` after the invoice
preview and sees the invoice; a declined card (``pm_card_chargeDeclined``) shows the error and
creates nothing.

Accounts are prepared through the public API (sign-up, the emailed verification link): the
sign-up pages have their own journey; these journeys start at sign-in.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import LiveServer, screenshot


def new_email(prefix: str) -> str:
    return f"{prefix}.{secrets.token_hex(4)}@clinic-example.org"


def new_password() -> str:
    return f"Vq{secrets.token_urlsafe(12)}!7z"


def emailed_token(live_server: LiveServer, email: str, path: str) -> str:
    # Emails leave through a job after the commit; the server's worker polls every 0.2 s.
    deadline = time.monotonic() + 15
    while True:
        try:
            link = live_server.emails.link_to(email, path)
            return parse_qs(urlsplit(link).query)["token"][0]
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # waiting for another process's delivery, not for a timing


def api_owner(live_server: LiveServer, org_name: str = "Lotus Family Clinic") -> tuple[str, str]:
    """A verified clinic owner, made through the API; returns (email, password)."""
    email, password = new_email("owner"), new_password()
    with httpx.Client(base_url=live_server.url) as api:
        registered = api.post(
            "/api/v1/auth/register",
            json={
                "email": email,
                "password": password,
                "full_name": "Asha Verma",
                "organization_name": org_name,
            },
        )
        assert registered.status_code == 202, registered.text
        token = emailed_token(live_server, email, "/verify-email")
        verified = api.post("/api/v1/auth/verify-email", json={"token": token})
        assert verified.status_code == 200, verified.text
    return email, password


async def sign_in(page: Page, email: str, password: str, totp: str | None = None) -> None:
    await page.goto("/sign-in")
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    if totp is not None:
        await page.get_by_label("Code from your authenticator app").fill(totp)
        await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("button", name="Sign out").first).to_be_visible()


async def test_owner_subscribes_with_a_test_card_and_sees_the_invoice(
    page: Page, live_server: LiveServer
) -> None:
    email, password = api_owner(live_server)
    await sign_in(page, email, password)
    await page.get_by_role("link", name="Billing").click()
    await expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()
    await page.get_by_label("Plan", exact=True).select_option("clinic_monthly")
    await page.get_by_label("Seats", exact=True).fill("2")
    await page.get_by_label("Card (test payment method)").fill("pm_card_visa")
    await page.get_by_role("button", name="Preview the invoice").click()
    preview = page.locator("#invoice-preview")
    await expect(preview).to_contain_text("Due today")
    await expect(page.locator("#due-now")).to_have_text("$78.00")
    await page.get_by_role("button", name="Confirm and subscribe").click()
    await expect(page.get_by_role("status")).to_contain_text("subscribed")
    await expect(page.locator("#sub-status")).to_have_text("active")
    invoices = page.locator("#invoices tbody tr")
    await expect(invoices).to_have_count(1)
    await expect(invoices.first).to_contain_text("$78.00")
    await expect(invoices.first).to_contain_text("paid")
    await screenshot(page, "billing-subscribed-with-invoice")


async def test_a_declined_card_shows_the_error_and_nothing_is_created(
    page: Page, live_server: LiveServer
) -> None:
    email, password = api_owner(live_server, "Declined Card Clinic")
    await sign_in(page, email, password)
    await page.goto("/billing")
    await page.get_by_label("Plan", exact=True).select_option("solo_monthly")
    await page.get_by_label("Card (test payment method)").fill("pm_card_chargeDeclined")
    await page.get_by_role("button", name="Preview the invoice").click()
    await page.get_by_role("button", name="Confirm and subscribe").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("The card was declined")
    await expect(alert).to_contain_text("Nothing was charged and no subscription was created")
    await expect(page.locator("#no-subscription")).to_be_visible()
    await screenshot(page, "billing-card-declined")
