"""Journeys through the console in a real browser (Chromium, headless), end to end.

1. Sign up -> verify through the emailed link -> enroll MFA (a TOTP from the shown key) ->
   sign out -> sign in with a TOTP code.
2. An owner invites a clinician, who accepts through the emailed link and signs in.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path

import pyotp
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import LiveServer, screenshot

# The first journey also starts the server; a loaded CI machine needs more than the default.
pytestmark = pytest.mark.timeout(300)


def _email(prefix: str) -> str:
    return f"{prefix}.{secrets.token_hex(4)}@clinic-example.org"


def _password() -> str:
    return f"Vq{secrets.token_urlsafe(12)}!7z"


async def _sign_up_and_verify(
    page: Page, live_server: LiveServer, email: str, password: str
) -> None:
    await page.goto("/")
    await expect(page).to_have_url(f"{live_server.url}/sign-in")
    await page.get_by_role("link", name="Create an account").click()
    await page.get_by_label("Your full name").fill("Asha Verma")
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Clinic name").fill("Lotus Family Clinic")
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("status")).to_contain_text("Check your inbox")
    link = await _wait_for_link(live_server, email, "/verify-email")
    await page.goto(link)
    await page.get_by_role("button", name="Verify my email").click()
    await expect(page.get_by_role("status")).to_contain_text("email address is verified")


async def _wait_for_link(live_server: LiveServer, email: str, path: str) -> str:
    # Emails leave through a job after the commit; the worker polls every 0.2 s.
    deadline = time.monotonic() + 15
    while True:
        try:
            return live_server.emails.link_to(email, path)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)  # the job's delivery happens in the server process


async def _sign_in(page: Page, email: str, password: str) -> None:
    await page.goto("/sign-in")
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_sign_up_verify_enroll_mfa_and_sign_in_with_totp(
    page: Page, live_server: LiveServer
) -> None:
    email, password = _email("owner"), _password()
    await _sign_up_and_verify(page, live_server, email, password)

    await _sign_in(page, email, password)
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    await page.get_by_role("link", name="Set up two-factor authentication").click()
    await page.get_by_role("button", name="Start setup").click()
    await expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    secret = (await page.locator("#totp-secret").inner_text()).strip()
    totp = pyotp.TOTP(secret)
    await page.get_by_label("Code from the app").fill(totp.now())
    await page.get_by_role("button", name="Confirm").click()
    await expect(
        page.get_by_role("heading", name="Two-factor authentication is on")
    ).to_be_visible()
    codes = page.locator("#recovery-codes li")
    await expect(codes).to_have_count(10)
    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="Download").click()
    saved = await (await downloading.value).path()
    text = await asyncio.to_thread(Path(saved).read_text)
    assert text.split() == [c.strip() for c in await codes.all_inner_texts()]
    await screenshot(page, "journey-1-recovery-codes")
    await page.get_by_role("link", name="I saved them, continue").click()

    await page.get_by_role("button", name="Sign out", exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text("You are signed out")
    await _sign_in(page, email, password)
    await expect(page.get_by_role("heading", name="Two-factor authentication")).to_be_visible()
    # The enrollment used this time step's code, and a code is accepted once: the next
    # step's code (inside the accepted drift) signs in without waiting for the clock.
    await page.get_by_label("Code from your authenticator app").fill(totp.at(time.time() + 30))
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    await expect(page.locator("#mfa .badge")).to_have_text("On")
    await screenshot(page, "journey-1-signed-in-with-totp")

    # Idle: the page's clock jumps ahead; two minutes before the 15-minute timeout a warning
    # offers to stay; "Stay signed in" resets it; at the timeout the page signs out.
    await page.clock.install()
    await page.reload()
    await page.clock.fast_forward("13:30")
    warning = page.get_by_role("alertdialog")
    await expect(warning).to_be_visible()
    await expect(warning.get_by_role("button", name="Stay signed in")).to_be_focused()
    await screenshot(page, "journey-1-idle-warning")
    await warning.get_by_role("button", name="Stay signed in").click()
    await expect(warning).to_be_hidden()
    await page.clock.fast_forward("13:30")
    await expect(warning).to_be_visible()
    await page.clock.fast_forward("02:00")
    await expect(page.get_by_role("status")).to_contain_text("period of inactivity")
    await page.goto("/account")
    await expect(page).to_have_url(re.compile(r"/sign-in\?next="))


async def test_owner_invites_a_clinician_who_accepts_and_signs_in(
    page: Page, live_server: LiveServer
) -> None:
    owner, owner_password = _email("owner"), _password()
    await _sign_up_and_verify(page, live_server, owner, owner_password)
    await _sign_in(page, owner, owner_password)
    await page.get_by_role("link", name="Clinic").click()
    invitee = _email("clinician")
    await page.get_by_label("Email address").fill(invitee)
    await page.get_by_label("Role", exact=True).select_option("clinician")
    await page.get_by_role("button", name="Send invitation").click()
    await expect(page.get_by_role("status")).to_contain_text("invitation is sent")

    link = await _wait_for_link(live_server, invitee, "/accept-invitation")
    # The clinician's browser runs no JavaScript: the email links and sign-in work without it.
    context = await page.context.browser.new_context(  # type: ignore[union-attr]
        base_url=live_server.url, java_script_enabled=False
    )
    try:
        clinician = await context.new_page()
        await clinician.goto(link)
        await clinician.get_by_label("Your full name").fill("Ravi Kumar")
        password = _password()
        await clinician.get_by_label("Password").fill(password)
        await clinician.get_by_role("button", name="Accept the invitation").click()
        await expect(clinician.get_by_role("status")).to_contain_text("you joined the clinic")
        await clinician.get_by_label("Email address").fill(invitee)
        await clinician.get_by_label("Password").fill(password)
        await clinician.get_by_role("button", name="Sign in").click()
        await expect(clinician.get_by_role("heading", name="Lotus Family Clinic")).to_be_visible()
        await screenshot(clinician, "journey-2-clinician-signed-in")
    finally:
        await context.close()

    await page.reload()
    row = page.locator("tr", has_text=invitee)
    await expect(row).to_contain_text("Ravi Kumar")
    # htmx: the role change answers the row alone, swapped in place.
    await row.get_by_label("Role of Ravi Kumar").select_option("auditor")
    await row.get_by_role("button", name="Change role").click()
    await expect(page.locator("tr", has_text=invitee).locator("select")).to_have_value("auditor")
    await screenshot(page, "journey-2-owner-members")


async def test_the_demo_owner_signs_in_at_once(page: Page, live_server: LiveServer) -> None:
    """`make run`: `demo init` prints credentials that sign in to the console straight away."""
    printed = live_server.cli("demo", "init")
    found = re.search(r"owner of .*?: (\S+)\s+password: (\S+)", printed)
    assert found, printed
    assert f"{live_server.url}/sign-in" in printed
    await _sign_in(page, found[1], found[2])
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Main")).to_contain_text("Clinic")
    await screenshot(page, "demo-owner-signed-in")


async def test_the_captcha_widget_works_under_the_csp(page: Page, live_server: LiveServer) -> None:
    """After three failed sign-ins the ALTCHA widget (same-origin module, worker and CSS under
    the strict CSP) solves its proof of work and the next sign-in passes."""
    email, password = _email("captcha"), _password()
    await _sign_up_and_verify(page, live_server, email, password)
    for _ in range(3):
        await _sign_in(page, email, "Wrong-password-123")
        await expect(page.get_by_role("alert")).to_contain_text("incorrect")
    await _sign_in(page, email, password)
    await expect(page.get_by_role("alert")).to_contain_text("solve the check")
    widget = page.locator("altcha-widget")
    await expect(widget).to_be_visible()
    await page.get_by_label("Password").fill(password)
    await widget.get_by_role("checkbox").click()  # starts the proof of work in a worker
    await expect(widget.locator("[data-state='verified']")).to_have_count(1, timeout=30_000)
    await screenshot(page, "captcha-solved")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
