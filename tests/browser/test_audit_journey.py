"""The audit trail in a real browser: an auditor filters the clinic's events by action and
outcome, and the list shows only what matches."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import LiveServer, screenshot
from tests.browser.test_billing_journey import (
    api_owner,
    emailed_token,
    new_email,
    new_password,
    sign_in,
)


def api_auditor(live_server: LiveServer, owner: str, owner_password: str) -> tuple[str, str]:
    """The owner invites an auditor, who accepts: all through the API."""
    email, password = new_email("auditor"), new_password()
    with httpx.Client(base_url=live_server.url) as api:
        login = api.post("/api/v1/auth/login", json={"email": owner, "password": owner_password})
        assert login.status_code == 200, login.text
        body = login.json()
        org_id = body["user"]["memberships"][0]["org_id"]
        invited = api.post(
            f"/api/v1/orgs/{org_id}/invitations",
            json={"email": email, "role": "auditor"},
            headers={"Authorization": f"Bearer {body['token']}"},
        )
        assert invited.status_code == 201, invited.text
        token = emailed_token(live_server, email, "/accept-invitation")
        api.cookies.clear()  # the invitee is not the signed-in owner
        accepted = api.post(
            "/api/v1/invitations/accept",
            json={"token": token, "full_name": "Meera Rao", "password": password},
        )
        assert accepted.status_code == 200, accepted.text
    return email, password


async def test_auditor_filters_the_audit_list(page: Page, live_server: LiveServer) -> None:
    owner, owner_password = api_owner(live_server, "Audited Clinic")
    email, password = api_auditor(live_server, owner, owner_password)
    await sign_in(page, email, password)
    await page.get_by_role("link", name="Audit").click()
    await expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    rows = page.locator("#audit-rows tr[data-sequence]")
    await expect(rows.first).to_be_visible()
    assert await rows.count() >= 3  # the clinic's creation, the invitation, the acceptance

    await page.get_by_label("Action").select_option("identity:invitation:accepted")
    await page.get_by_label("Outcome").select_option("success")
    await page.get_by_role("button", name="Apply").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("identity:invitation:accepted")
    await expect(page.get_by_label("Action")).to_have_value("identity:invitation:accepted")
    await screenshot(page, "audit-filtered-by-auditor")

    await page.get_by_label("Action").select_option("identity:member:role_changed")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#no-events")).to_be_visible()
