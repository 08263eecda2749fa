"""Sign-in failures look alike; throttling asks for a CAPTCHA, then refuses with 429."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx

from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from tests.identity.accounts.conftest import AppFactory
from tests.identity.accounts.helpers import (
    Account,
    login,
    patch_member,
    register,
    signed_up,
    solve_captcha,
    unique_email,
)

# Headers that differ on every response by design (request id, the CSP's per-response nonce).
_PER_RESPONSE = frozenset({"x-request-id", "content-security-policy", "date"})


def _without_request_id(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in _PER_RESPONSE)
    return response.status_code, response.content, headers


async def test_failure_bodies_are_byte_identical_for_every_reason(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signed_up(client, db)
    unverified = await register(client)
    deactivated_owner = await signed_up(client, db)
    # Deactivate a member so "deactivated" is covered as well.
    from tests.identity.accounts.helpers import invite_and_join

    member = await invite_and_join(client, db, deactivated_owner, "clinician")
    patch = await patch_member(client, deactivated_owner, member.user_id, {"active": False})
    assert patch.status_code == 200

    unknown = await client.post(
        "/api/v1/auth/login",
        json={"email": unique_email("nobody"), "password": "Some-password-123"},
    )
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": account.email, "password": "Some-password-123"}
    )
    not_verified = await login(client, unverified)
    assert unknown.status_code == 401
    assert unknown.json()["code"] == "invalid_credentials"
    assert _without_request_id(unknown) == _without_request_id(wrong)
    assert _without_request_id(unknown) == _without_request_id(not_verified)
    assert unknown.headers["x-request-id"] != wrong.headers["x-request-id"]


async def test_deactivated_member_gets_the_same_answer(
    client: httpx.AsyncClient, db: Database
) -> None:
    from tests.identity.accounts.helpers import invite_and_join

    owner = await signed_up(client, db)
    member = await invite_and_join(client, db, owner, "clinician")
    unknown = await client.post(
        "/api/v1/auth/login",
        json={"email": unique_email("nobody"), "password": member.password},
    )
    # Deactivated in their only clinic: sessions end; a sign-in is still possible (the account
    # itself is active) but the clinic answers 404 from now on.
    await patch_member(client, owner, member.user_id, {"active": False})
    assert (await client.get("/api/v1/me", headers=member.auth)).status_code == 401
    assert unknown.json()["code"] == "invalid_credentials"


async def _fail(client: httpx.AsyncClient, account: Account, **extra: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login",
        json={"email": account.email, "password": "Definitely-wrong-99", **extra},
    )


async def test_captcha_after_three_failures_then_429_after_five(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await signed_up(client, db)
    for _ in range(3):
        assert (await _fail(client, account)).json()["code"] == "invalid_credentials"

    # Fourth attempt, even with the right password: a CAPTCHA is needed first.
    needs = await login(client, account)
    assert needs.status_code == 401
    body = needs.json()
    assert body["code"] == "captcha_required"
    assert {"algorithm", "challenge", "salt", "signature"} <= set(body["captcha"])

    solved = solve_captcha(body["captcha"])
    fourth = await _fail(client, account, captcha=solved)
    assert fourth.json()["code"] == "invalid_credentials"
    # A solution buys exactly one attempt.
    reused = await _fail(client, account, captcha=solved)
    assert reused.json()["code"] == "captcha_required"

    fresh = (await client.get("/api/v1/auth/captcha")).json()
    fifth = await _fail(client, account, captcha=solve_captcha(fresh))
    assert fifth.json()["code"] == "invalid_credentials"

    # Five failures: the pair is refused for 15 minutes, correct password or not.
    fresh = (await client.get("/api/v1/auth/captcha")).json()
    blocked = await login(client, account, captcha=solve_captcha(fresh))
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "too_many_attempts"
    retry_after = int(blocked.headers["retry-after"])
    assert 0 < retry_after <= 900

    frozen_clock.advance(timedelta(seconds=retry_after + 1))
    fresh = (await client.get("/api/v1/auth/captcha")).json()
    after = await login(client, account, captcha=solve_captcha(fresh))
    assert after.status_code == 200, after.text


async def test_captcha_garbage_is_refused_without_error(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signed_up(client, db)
    for _ in range(3):
        await _fail(client, account)
    for garbage in ("", "not base64!", "e30=", json.dumps({"number": 1})):
        response = await login(client, account, captcha=garbage)
        assert response.status_code == 401
        assert response.json()["code"] == "captcha_required"


async def test_hash_is_upgraded_when_parameters_change(
    client: httpx.AsyncClient, db: Database
) -> None:
    from sqlalchemy import select

    from aayu_accounts.identity.password import PasswordHasher
    from aayu_accounts.models.user import User

    account = await signed_up(client, db)
    weaker = PasswordHasher(memory_kib=512, time_cost=1, parallelism=1)
    async with db.session_scope() as session:
        user = await session.scalar(select(User).where(User.id == account.user_id))
        assert user is not None
        user.password_hash = await weaker.hash(account.password)
    weaker.close()
    assert (await login(client, account)).status_code == 200
    async with db.session_scope(write=False) as session:
        stored = await session.scalar(select(User.password_hash).where(User.id == account.user_id))
    assert stored is not None
    assert "m=1024" in stored


async def test_credential_stuffing_is_audited_and_alerted(
    app_with: AppFactory, db: Database
) -> None:
    from sqlalchemy import select

    from aayu_accounts.models.alert import Alert
    from aayu_accounts.models.audit_event import AuditEvent

    async with app_with(
        login_ip_captcha_after=50, login_ip_block_after=6, login_ip_window_seconds=900
    ) as client:
        for _ in range(6):
            response = await client.post(
                "/api/v1/auth/login",
                json={"email": unique_email("stuffed"), "password": "Leaked-password-123"},
            )
            assert response.json()["code"] == "invalid_credentials"
        blocked = await client.post(
            "/api/v1/auth/login",
            json={"email": unique_email("stuffed"), "password": "Leaked-password-123"},
        )
        assert blocked.status_code == 429
    async with db.session_scope(write=False) as session:
        detected = (
            await session.scalars(
                select(AuditEvent.details).where(
                    AuditEvent.action == "identity:brute_force:detected"
                )
            )
        ).all()
        alerts = (await session.scalars(select(Alert.key))).all()
    assert detected == [{"scope": "ip"}]
    assert "identity.brute_force.ip" in alerts
