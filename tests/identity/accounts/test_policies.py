"""Terms of service and privacy policy: a new version must be accepted at the next sign-in."""

from __future__ import annotations

import httpx
from sqlalchemy import select, update

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.user import User
from tests.identity.accounts.helpers import login, signed_up


async def test_sign_up_records_the_accepted_versions(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    account = await signed_up(client, db)
    status = await client.get("/api/v1/me/policies", headers=account.auth)
    assert status.status_code == 200
    body = status.json()
    assert body["acceptance_required"] is False
    assert body["terms"]["accepted_version"] == settings.terms_version
    assert body["privacy"]["accepted_version"] == settings.privacy_version
    assert body["terms"]["accepted_at"]


async def test_new_version_requires_acceptance_before_anything_else(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    account = await signed_up(client, db)
    # The user accepted an older version (as if a new one was published since).
    async with db.session_scope() as session:
        await session.execute(
            update(User).where(User.id == account.user_id).values(terms_version="2020-01-01")
        )
    signed_in = await login(client, account)
    assert signed_in.json()["required_actions"] == ["accept_policies"]
    token = signed_in.json()["token"]
    client.cookies.clear()
    auth = {"Authorization": f"Bearer {token}"}

    blocked = await client.get(f"/api/v1/orgs/{account.org_id}", headers=auth)
    assert blocked.status_code == 403
    assert blocked.json()["code"] == "policy_acceptance_required"
    assert (await client.get("/api/v1/me", headers=auth)).status_code == 200

    stale = await client.post(
        "/api/v1/me/policies/accept",
        json={"terms_version": "2020-01-01", "privacy_version": settings.privacy_version},
        headers=auth,
    )
    assert stale.status_code == 409
    accepted = await client.post(
        "/api/v1/me/policies/accept",
        json={
            "terms_version": settings.terms_version,
            "privacy_version": settings.privacy_version,
        },
        headers=auth,
    )
    assert accepted.status_code == 200
    assert accepted.json()["acceptance_required"] is False
    assert (await client.get(f"/api/v1/orgs/{account.org_id}", headers=auth)).status_code == 200
    async with db.session_scope(write=False) as session:
        actions = (
            await session.scalars(
                select(AuditEvent.action).where(AuditEvent.actor_id == account.user_id)
            )
        ).all()
    assert "identity:policy:accepted" in actions
