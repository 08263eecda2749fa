"""Seats: clinicians may not exceed paid seats (invite, accept, role change, reactivation)."""

from __future__ import annotations

import json

import httpx
import pytest

from aayu_accounts.api_security.service_client import service as client_service
from aayu_accounts.audit.service import Actor
from aayu_accounts.client.signing import secret_key, sign_headers
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


async def test_a_deactivated_clinician_is_refused_at_the_next_entitlement_check(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Deactivation needs no seat, yet changes the entitlement answer: the clinic's cached
    answers are dropped when it commits, not an hour later."""
    owner = await signed_up(client, db)
    base = f"/api/v1/orgs/{owner.org_id}"
    clinician = await invite_and_join(client, db, owner, "clinician")
    subscribed = await client.post(
        f"{base}/subscription",
        json={"plan_id": "clinic_monthly", "seats": 1, "payment_method": "pm_card_visa"},
        headers=owner.auth,
    )
    assert subscribed.status_code == 201, subscribed.text
    async with db.session_scope() as session:
        issued = await client_service.create_client(
            session, name="seat-cache-test", actor=Actor.system("test"), rate_limit_per_second=100
        )
    question = {"org_id": owner.org_id, "user_id": clinician.user_id, "feature": "notes"}

    async def entitled() -> dict[str, object]:
        raw = json.dumps(question).encode()
        path = "/api/v1/service/entitlements/check"
        headers = sign_headers(
            key_id=issued.key_id,
            secret=secret_key(issued.secret),
            method="POST",
            path=path,
            body=raw,
        )
        response = await client.post(
            path, content=raw, headers={**headers, "Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text
        answer: dict[str, object] = response.json()
        return answer

    assert (await entitled())["allowed"] is True  # now cached for the clinic
    off = await client.patch(
        f"{base}/members/{clinician.user_id}", json={"active": False}, headers=owner.auth
    )
    assert off.status_code == 200
    answer = await entitled()
    assert (answer["allowed"], answer["reason"]) == (False, "not_a_member")
