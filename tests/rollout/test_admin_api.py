"""The operations API of API.md: flags, rollback and incidents, for platform admins only."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select, update

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.user import User
from tests.identity.accounts.helpers import Account, login, signed_up


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Cheap Argon2 and ALTCHA: these tests are about the rollout, not password hashing.
    return settings.model_copy(
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, "altcha_max_number": 5000}
    )


async def platform_admin(client: httpx.AsyncClient, db: Database) -> Account:
    account = await signed_up(client, db)
    async with db.session_scope() as session:
        await session.execute(
            update(User).where(User.id == account.user_id).values(is_platform_admin=True)
        )
    response = await login(client, account)
    assert response.status_code == 200, response.text
    account.token = response.json()["token"]
    client.cookies.clear()
    return account


async def test_only_platform_admins_reach_the_admin_api(
    seeded_db: Database, client: httpx.AsyncClient
) -> None:
    clinician = await signed_up(client, seeded_db)
    for method, path in (
        ("GET", "/api/v1/admin/flags"),
        ("PUT", "/api/v1/admin/flags/NEW_AUTH"),
        ("POST", "/api/v1/admin/rollback"),
        ("GET", "/api/v1/admin/incidents"),
    ):
        anonymous = await client.request(method, path, json={})
        assert anonymous.status_code == 401, path
        refused = await client.request(method, path, json={}, headers=clinician.auth)
        assert refused.status_code == 403, path


async def test_admin_changes_a_flag_rolls_back_and_reads_the_incident(
    seeded_db: Database, client: httpx.AsyncClient
) -> None:
    admin = await platform_admin(client, seeded_db)
    listed = await client.get("/api/v1/admin/flags", headers=admin.auth)
    assert listed.status_code == 200
    keys = {f["key"] for f in listed.json()}
    assert {"NEW_AUTH", "NEW_DATABASE", "BILLING", "SHADOW_WRITES", "FALLBACK"} <= keys
    first = listed.json()[0]
    assert {"key", "enabled", "rollout_percent", "description", "updated_at"} <= set(first)

    changed = await client.put(
        "/api/v1/admin/flags/NEW_AUTH",
        json={"enabled": True, "rollout_percent": 25, "allow": {"user_ids": ["beta-1"]}},
        headers=admin.auth,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["rollout_percent"] == 25
    unknown_field = await client.put(
        "/api/v1/admin/flags/NEW_AUTH", json={"percent": 5}, headers=admin.auth
    )
    assert unknown_field.status_code == 422
    bad_dependency = await client.put(
        "/api/v1/admin/flags/NEW_AUTH", json={"requires": ["NOPE"]}, headers=admin.auth
    )
    assert bad_dependency.status_code == 422
    assert bad_dependency.json()["code"] == "flag_dependency_invalid"

    rolled = await client.post(
        "/api/v1/admin/rollback", json={"reason": "error spike"}, headers=admin.auth
    )
    assert rolled.status_code == 200, rolled.text
    result = rolled.json()
    assert result["flags"]["NEW_AUTH"]["enabled"] is False
    assert result["flags"]["FALLBACK"]["enabled"] is True

    incidents = (await client.get("/api/v1/admin/incidents", headers=admin.auth)).json()
    assert incidents[0]["id"] == result["incident_id"]
    assert incidents[0]["actor"] == f"user:{admin.user_id}"
    assert incidents[0]["reason"] == "error spike"
    assert incidents[0]["flags_before"]["NEW_AUTH"] == {"enabled": True, "rollout_percent": 25}

    async with seeded_db.session_scope(write=False) as session:
        actions = (
            await session.scalars(
                select(AuditEvent.action).where(AuditEvent.actor_id == admin.user_id)
            )
        ).all()
    assert AuditAction.FLAG_UPDATED.value in actions
    assert AuditAction.ROLLBACK_EXECUTED.value in actions
