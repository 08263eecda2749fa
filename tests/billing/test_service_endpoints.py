"""Billing through the signed service API (api_security's endpoints call billing's functions):
usage with one ``event_id`` sent three times, and at once, counts once; entitlement checks."""

from __future__ import annotations

import json
from typing import Any

import httpx

from aayu_accounts.api_security.service_client import service as client_service
from aayu_accounts.audit.service import Actor
from aayu_accounts.billing.payment_provider.local import LocalProvider
from aayu_accounts.billing.runtime import BillingRuntime
from aayu_accounts.client.signing import secret_key, sign_headers
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from tests.billing import as_owner
from tests.billing.factories import make_clinic, seed_default_plans


async def _signed_post(
    client: httpx.AsyncClient, key_id: str, secret: str, path: str, body: dict[str, Any]
) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = sign_headers(
        key_id=key_id, secret=secret_key(secret), method="POST", path=path, body=raw
    )
    headers["Content-Type"] = "application/json"
    return await client.post(path, content=raw, headers=headers)


async def test_signed_usage_counts_once_and_entitlements_answer(
    client: httpx.AsyncClient, db: Database, billing: BillingRuntime, local_provider: LocalProvider
) -> None:
    async with db.session_scope() as session:
        await seed_default_plans(session)
        clinic = await make_clinic(session)
        await as_owner.subscribe(
            session,
            local_provider,
            clinic,
            plan_id="clinic_monthly",
            seats=1,
            payment_method="pm_card_visa",
            trial=False,
        )
        issued = await client_service.create_client(
            session,
            name="scribe-billing-test",
            actor=Actor.system("test"),
            rate_limit_per_second=1000,
        )
    clinician = next(u for u, r in clinic.members.items() if r == "clinician")
    usage = {
        "event_id": "note-0001",
        "org_id": clinic.org_id,
        "user_id": clinician,
        "metric": "notes",
        "quantity": 1,
        "occurred_at": clock.now().isoformat(),
    }
    for _ in range(3):
        response = await _signed_post(
            client, issued.key_id, issued.secret, "/api/v1/service/usage", usage
        )
        assert response.status_code == 202, response.text
    # (Concurrent deliveries are tested against the service with real connections in
    # test_usage_and_entitlements.py; this app shares one test connection.)
    responses = [
        await _signed_post(
            client,
            issued.key_id,
            issued.secret,
            "/api/v1/service/usage",
            {**usage, "event_id": "note-0002"},
        )
        for _ in range(3)
    ]
    assert [r.json()["recorded"] for r in responses] == [True, False, False]

    check = {"org_id": clinic.org_id, "user_id": clinician, "feature": "notes"}
    response = await _signed_post(
        client, issued.key_id, issued.secret, "/api/v1/service/entitlements/check", check
    )
    assert response.status_code == 200, response.text
    assert response.json()["allowed"] is True
    assert response.json()["remaining"] == 400 - 2
    stranger = {**check, "user_id": "not-a-member"}
    response = await _signed_post(
        client, issued.key_id, issued.secret, "/api/v1/service/entitlements/check", stranger
    )
    assert response.json()["allowed"] is False
    assert response.json()["reason"] == "not_a_member"
    # Unsigned: refused before billing is asked.
    unsigned = await client.post("/api/v1/service/usage", json=usage)
    assert unsigned.status_code == 401
