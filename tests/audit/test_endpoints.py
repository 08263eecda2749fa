"""The audit API over HTTP: roles, org scoping (404 to outsiders), filters, cursors, exports."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest
from sqlalchemy import update

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.models.user import User
from tests.identity.accounts.helpers import Account, invite_and_join, login, signed_up

EXPORTS_PER_DAY = 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Cheap Argon2 and ALTCHA (these tests are about the audit API), and a low export limit.
    return settings.model_copy(
        update={
            "argon2_memory_kib": 1024,
            "argon2_time_cost": 1,
            "altcha_max_number": 5000,
            "audit_exports_per_day": EXPORTS_PER_DAY,
        }
    )


def _events(owner: Account) -> str:
    return f"/api/v1/orgs/{owner.org_id}/audit-events"


async def test_owner_reads_the_clinics_events_and_outsiders_get_404(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    outsider = await signed_up(client, db)
    assert (await client.get(_events(owner))).status_code == 401

    response = await client.get(_events(owner), headers=owner.auth)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["items"], "sign-up and sign-in leave events in the clinic's trail"
    assert {item["org_id"] for item in page["items"]} == {owner.org_id}
    sequences = [item["sequence"] for item in page["items"]]
    assert sequences == sorted(sequences, reverse=True)

    refused = await client.get(_events(owner), headers=outsider.auth)
    assert refused.status_code == 404
    assert refused.json()["code"] == "not_found"
    refused = await client.get(_events(owner) + "/export", headers=outsider.auth)
    assert refused.status_code == 404


async def test_roles_filters_and_cursors(client: httpx.AsyncClient, db: Database) -> None:
    owner = await signed_up(client, db)
    admin = await invite_and_join(client, db, owner, "admin")
    auditor = await invite_and_join(client, db, owner, "auditor")
    clinician = await invite_and_join(client, db, owner, "clinician")

    assert (await client.get(_events(owner), headers=admin.auth)).status_code == 200
    assert (await client.get(_events(owner), headers=auditor.auth)).status_code == 200
    assert (await client.get(_events(owner), headers=clinician.auth)).status_code == 403
    assert (await client.get(_events(owner) + "/export", headers=admin.auth)).status_code == 403

    invited = await client.get(
        _events(owner), params={"action": "identity:invitation:created"}, headers=owner.auth
    )
    assert invited.status_code == 200
    items = invited.json()["items"]
    assert len(items) == 3
    assert {item["actor_id"] for item in items} == {owner.user_id}

    mine = await client.get(_events(owner), params={"actor_id": admin.user_id}, headers=owner.auth)
    assert {item["actor_id"] for item in mine.json()["items"]} == {admin.user_id}

    everything = (
        await client.get(_events(owner), params={"limit": 200}, headers=owner.auth)
    ).json()["items"]
    walked: list[int] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = (await client.get(_events(owner), params=params, headers=owner.auth)).json()
        walked.extend(item["sequence"] for item in page["items"])
        if page["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": page["next_cursor"]}
    assert walked == [item["sequence"] for item in everything]

    bad = await client.get(_events(owner), params={"action": "no:such:action"}, headers=owner.auth)
    assert bad.status_code == 422
    bad = await client.get(_events(owner), params={"cursor": "garbage"}, headers=owner.auth)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_cursor")
    bad = await client.get(
        _events(owner),
        params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        headers=owner.auth,
    )
    assert bad.status_code == 422


async def test_exports_are_streamed_audited_and_limited(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(client, db)
    response = await client.get(_events(owner) + "/export", headers=owner.auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert rows[-1]["action"] == "audit:events:exported"  # committed before streaming
    assert rows[-1]["actor_id"] == owner.user_id
    assert {row["org_id"] for row in rows} == {owner.org_id}

    as_csv = await client.get(
        _events(owner) + "/export", params={"format": "csv"}, headers=owner.auth
    )
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert table[-1]["action"] == "audit:events:exported"
    assert len(table) == len(rows) + 1

    limited = await client.get(_events(owner) + "/export", headers=owner.auth)
    assert limited.status_code == 429
    assert limited.json()["code"] == "export_limit_reached"
    assert int(limited.headers["retry-after"]) > 0
    listed = await client.get(
        _events(owner), params={"action": "audit:events:exported"}, headers=owner.auth
    )
    assert len(listed.json()["items"]) == EXPORTS_PER_DAY  # the refused one left no event


async def test_platform_admins_read_across_clinics(client: httpx.AsyncClient, db: Database) -> None:
    first = await signed_up(client, db)
    second = await signed_up(client, db)
    path = "/api/v1/admin/audit-events"
    assert (await client.get(path, headers=first.auth)).status_code == 403
    async with db.session_scope() as session:
        await session.execute(
            update(User).where(User.id == first.user_id).values(is_platform_admin=True)
        )
    first.token = (await login(client, first)).json()["token"]
    client.cookies.clear()
    response = await client.get(path, params={"limit": 200}, headers=first.auth)
    assert response.status_code == 200, response.text
    orgs = {item["org_id"] for item in response.json()["items"]}
    assert {first.org_id, second.org_id} <= orgs
    only = await client.get(path, params={"org_id": second.org_id}, headers=first.auth)
    assert {item["org_id"] for item in only.json()["items"]} == {second.org_id}
