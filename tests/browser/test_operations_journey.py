"""Operations in a real browser: a platform administrator (signed in with TOTP) raises
NEW_AUTH to 25 % with the rollout slider (htmx swaps the flag's card), then presses the kill
switch, confirms, and lands on the incident report."""

from __future__ import annotations

import time

import httpx
import pyotp
from playwright.async_api import Page, expect

from tests.browser.conftest import LiveServer, screenshot
from tests.browser.test_billing_journey import new_email, new_password, sign_in


def platform_admin_with_totp(live_server: LiveServer) -> tuple[str, str, pyotp.TOTP]:
    """Created by the operator's CLI, TOTP enrolled through the API; returns the credentials."""
    email, password = new_email("ops"), new_password()
    live_server.cli("admin", "create", "--email", email, "--password-stdin", stdin=password)
    with httpx.Client(base_url=live_server.url) as api:
        login = api.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        started = api.post("/api/v1/me/mfa/totp", headers=auth)
        assert started.status_code == 200, started.text
        totp = pyotp.TOTP(started.json()["secret"])
        confirmed = api.post("/api/v1/me/mfa/totp/confirm", json={"code": totp.now()}, headers=auth)
        assert confirmed.status_code == 200, confirmed.text
    return email, password, totp


async def test_admin_raises_new_auth_to_25_percent_and_rolls_back(
    page: Page, live_server: LiveServer
) -> None:
    email, password, totp = platform_admin_with_totp(live_server)
    # The enrollment used this time step's code and a code counts once: the next step's code
    # (inside the accepted drift) signs in without waiting for the clock.
    await sign_in(page, email, password, totp=totp.at(time.time() + 30))
    await page.get_by_role("link", name="Operations").click()
    await expect(page.get_by_role("heading", name="Operations", exact=True)).to_be_visible()

    card = page.locator("#flag-NEW_AUTH")
    await card.get_by_label("Enabled").check()
    await card.get_by_label("Rollout slider for NEW_AUTH").fill("25")
    # The slider keeps the submitted number field in step (operations.js).
    await expect(card.get_by_label("Rollout (% of users)")).to_have_value("25")
    await card.get_by_role("button", name="Save NEW_AUTH").click()
    card = page.locator("#flag-NEW_AUTH")
    await expect(card.get_by_role("status")).to_contain_text("Saved")
    await expect(card.locator("[data-flag-state]")).to_have_text("on · 25 %")
    await screenshot(page, "operations-new-auth-25-percent")

    await page.get_by_role("link", name="Roll back…").click()
    await expect(page.get_by_role("heading", name="Roll back the new path?")).to_be_visible()
    await expect(page.locator("table")).to_contain_text("on · 25 %")
    await page.get_by_label("Reason (for the incident report)").fill("browser journey")
    await page.get_by_role("button", name="Yes, roll back now").click()
    await expect(page.get_by_role("status")).to_contain_text("Rolled back")
    await expect(page.locator("#incident-reason")).to_have_text("browser journey")
    flags = page.locator("#incident-flags")
    await expect(flags.locator("tr", has_text="NEW_AUTH")).to_contain_text("on 25 %")
    await expect(flags.locator("tr", has_text="NEW_AUTH")).to_contain_text("off 25 %")
    await screenshot(page, "operations-rolled-back-incident")

    await page.goto("/operations")
    await expect(page.locator("#flag-NEW_AUTH [data-flag-state]")).to_have_text("off · 25 %")
