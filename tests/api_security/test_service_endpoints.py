"""The four signed service endpoints, answered from identity, billing and rollout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest_asyncio
from fastapi import FastAPI

from aayu_accounts.api_security.service_api.service import BILLING_NOT_ENFORCED
from aayu_accounts.audit.service import Actor
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.schemas import FlagUpdate
from tests.api_security.conftest import SigningClient
from tests.identity.accounts.helpers import Account, signed_up

INTROSPECT = "/api/v1/service/sessions/introspect"
ENTITLEMENTS = "/api/v1/service/entitlements/check"
USAGE = "/api/v1/service/usage"
FLAGS = "/api/v1/service/flags/evaluate"


@pytest_asyncio.fixture(loop_scope="session")
async def account(client: httpx.AsyncClient, db: Database) -> AsyncIterator[Account]:
    yield await signed_up(client, db)


async def test_a_live_session_is_active_with_its_user_orgs_and_expiry(
    signer: SigningClient, account: Account
) -> None:
    response = await signer.post(INTROSPECT, {"token": account.token})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["active"] is True
    assert body["user_id"] == account.user_id
    assert body["org_ids"] == [account.org_id]
    assert body["mfa"] is False
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None
    # The idle deadline (15 minutes) comes before the absolute one (12 hours).
    assert expires - datetime.now(UTC) <= timedelta(minutes=15, seconds=5)


async def test_anything_else_is_inactive_with_nothing_more(
    signer: SigningClient, account: Account, client: httpx.AsyncClient
) -> None:
    for token in ("", "x" * 43, "y" * 600, account.token + "x"):
        response = await signer.post(INTROSPECT, {"token": token})
        if token == "" or len(token) > 512:
            assert response.status_code == 422
            continue
        assert response.json() == {"active": False}
    logout = await client.post("/api/v1/auth/logout", headers=account.auth)
    assert logout.status_code == 204
    assert (await signer.post(INTROSPECT, {"token": account.token})).json() == {"active": False}


async def test_an_idle_session_is_inactive(
    signer: SigningClient, client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await signed_up(client, db)
    assert (await signer.post(INTROSPECT, {"token": account.token})).json()["active"] is True
    frozen_clock.advance(timedelta(minutes=16))
    assert (await signer.post(INTROSPECT, {"token": account.token})).json() == {"active": False}


async def test_unknown_fields_are_refused(signer: SigningClient, account: Account) -> None:
    response = await signer.post(INTROSPECT, {"token": account.token, "extra": 1})
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_usage_counts_an_event_id_once(signer: SigningClient, account: Account) -> None:
    event = {
        "event_id": "note-7f3c-0001",
        "org_id": account.org_id,
        "user_id": account.user_id,
        "metric": "notes",
        "quantity": 1,
        "occurred_at": "2026-11-28T10:00:00Z",
    }
    first = await signer.post(USAGE, event)
    again = await signer.post(USAGE, event)
    assert first.status_code == 202, first.text
    assert again.status_code == 202
    assert first.json()["recorded"] is True
    assert again.json()["recorded"] is False
    naive = await signer.post(
        USAGE, {**event, "event_id": "n2", "occurred_at": "2026-11-28T10:00:00"}
    )
    assert naive.status_code == 422


async def test_entitlements_wait_for_the_billing_flag(
    signer: SigningClient, account: Account, app: FastAPI, db: Database
) -> None:
    ask = {"org_id": account.org_id, "user_id": account.user_id, "feature": "notes"}
    before = await signer.post(ENTITLEMENTS, ask)
    assert before.status_code == 200, before.text
    assert before.json() == {"allowed": True, "reason": BILLING_NOT_ENFORCED, "remaining": None}
    stranger = await signer.post(ENTITLEMENTS, {**ask, "user_id": "not-a-member"})
    assert stranger.json()["allowed"] is False
    assert stranger.json()["reason"] == "not_a_member"

    async with db.session_scope() as session:
        for key in ("NEW_DATABASE", "BILLING"):
            await flag_service.update_flag(
                session,
                key,
                FlagUpdate(enabled=True, rollout_percent=100),
                actor=Actor.system("test"),
            )
    await app.state.flag_runtime.reload(source="test")
    after = await signer.post(ENTITLEMENTS, ask)
    assert after.json()["allowed"] is False
    assert after.json()["reason"] == "no_subscription"
    flags = await signer.post(FLAGS, {"user_id": account.user_id, "org_id": account.org_id})
    assert flags.json()["flags"]["BILLING"] is True


async def test_flags_are_evaluated_for_the_caller(signer: SigningClient, account: Account) -> None:
    response = await signer.post(FLAGS, {"user_id": account.user_id})
    assert response.status_code == 200
    flags = response.json()["flags"]
    assert set(flags) >= {"NEW_AUTH", "NEW_DATABASE", "BILLING", "SHADOW_WRITES", "FALLBACK"}
    assert all(isinstance(v, bool) for v in flags.values())


async def test_a_stale_snapshot_answers_off_for_the_new_path_over_http(
    app: FastAPI, db: Database, signer: SigningClient, account: Account
) -> None:
    """An instance whose flag snapshot is older than its bound tells the scribe app "legacy":
    the new-path flags read off whatever the configuration says, the others are unchanged."""
    async with db.session_scope() as session:
        for key in ("NEW_AUTH", "NEW_DATABASE", "SHADOW_WRITES"):
            await flag_service.update_flag(
                session, key, FlagUpdate(enabled=True, rollout_percent=100), actor=Actor.system("t")
            )
    runtime = app.state.flag_runtime
    await runtime.reload(source="test")
    ask = {"user_id": account.user_id, "org_id": account.org_id}
    fresh = (await signer.post(FLAGS, ask)).json()["flags"]
    assert fresh["NEW_AUTH"] is fresh["NEW_DATABASE"] is fresh["SHADOW_WRITES"] is True
    bound = runtime.store.max_staleness_seconds
    runtime.store.max_staleness_seconds = -1.0  # older than any bound: stale now
    try:
        stale = (await signer.post(FLAGS, ask)).json()["flags"]
    finally:
        runtime.store.max_staleness_seconds = bound
    assert stale["NEW_AUTH"] is stale["NEW_DATABASE"] is False
    assert stale["SHADOW_WRITES"] is True
