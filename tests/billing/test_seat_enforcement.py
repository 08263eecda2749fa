"""Seats: clinicians may not exceed paid seats (invite, accept, role change, reactivation)."""

from __future__ import annotations

import httpx
import pytest

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from tests.identity.accounts.helpers import invite_and_join, signed_up, unique_email


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, "altcha_max_number": 5000}
    )


async def test_clinicians_beyond_paid_seats_are_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    base = f"/api/v1/orgs/{owner.org_id}"
    first = await invite_and_join(client, db, owner, "clinician")
    admin = await invite_and_join(client, db, owner, "admin")

    subscribed = await client.post(
        f"{base}/subscription",
        json={"plan_id": "clinic_monthly", "seats": 1, "payment_method": "pm_card_visa"},
        headers=owner.auth,
    )
    assert subscribed.status_code == 201, subscribed.text

    # The one seat is taken: a second clinician cannot be invited ...
    refused = await client.post(
        f"{base}/invitations",
        json={"email": unique_email("second"), "role": "clinician"},
        headers=owner.auth,
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "seat_limit"
    # ... nor can an admin be turned into one; other roles need no seat.
    promoted = await client.patch(
        f"{base}/members/{admin.user_id}", json={"role": "clinician"}, headers=owner.auth
    )
    assert promoted.status_code == 409
    assert promoted.json()["code"] == "seat_limit"
    auditor = await client.post(
        f"{base}/invitations",
        json={"email": unique_email("auditor"), "role": "auditor"},
        headers=owner.auth,
    )
    assert auditor.status_code == 201

    # A deactivated clinician frees the seat; reactivating needs it back.
    off = await client.patch(
        f"{base}/members/{first.user_id}", json={"active": False}, headers=owner.auth
    )
    assert off.status_code == 200
    second = await invite_and_join(client, db, owner, "clinician")
    assert second.user_id
    back = await client.patch(
        f"{base}/members/{first.user_id}", json={"active": True}, headers=owner.auth
    )
    assert back.status_code == 409
    assert back.json()["code"] == "seat_limit"

    # Raising the seat count lets the owner reactivate.
    raised = await client.patch(f"{base}/subscription", json={"seats": 2}, headers=owner.auth)
    assert raised.status_code == 200
    back = await client.patch(
        f"{base}/members/{first.user_id}", json={"active": True}, headers=owner.auth
    )
    assert back.status_code == 200
