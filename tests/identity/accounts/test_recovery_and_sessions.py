"""Password reset and change, the sessions list, revocation, idle and absolute timeouts."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aayu_accounts.crypto.keyring import KeyPurpose, get_keyring
from aayu_accounts.crypto.keyring.usage import rows_per_version
from aayu_accounts.db import Database
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.auth_session.cache import CachedPrincipal, Invalidation
from aayu_accounts.identity.tokens import hash_token
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models import Base
from tests.identity.accounts.helpers import (
    emails_to,
    login,
    run_reset_requests,
    signed_up,
    strong_password,
    token_from_email,
    unique_email,
)


async def test_reset_request_is_202_whether_or_not_the_account_exists(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signed_up(client, db)
    known = await client.post("/api/v1/auth/password-reset/request", json={"email": account.email})
    unknown = await client.post(
        "/api/v1/auth/password-reset/request", json={"email": unique_email("nobody")}
    )
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert len(await emails_to(db, account.email, "password_reset")) == 1


async def test_reset_confirm_revokes_every_session_and_is_single_use(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signed_up(client, db)
    second = await login(client, account)
    second_token = second.json()["token"]
    client.cookies.clear()
    await client.post("/api/v1/auth/password-reset/request", json={"email": account.email})
    token = await token_from_email(db, account.email, "password_reset")

    weak = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"}
    )
    assert weak.status_code == 422
    assert weak.json()["code"] == "password_too_weak"

    new_password = strong_password()
    done = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password}
    )
    assert done.status_code == 204, done.text
    for old in (account.token, second_token):
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {old}"})
        assert response.status_code == 401
    again = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password}
    )
    assert again.status_code == 400
    assert again.json()["code"] == "token_invalid"

    assert (await login(client, account)).status_code == 401
    account.password = new_password
    assert (await login(client, account)).status_code == 200
    assert "password_changed" in [e.template for e in await emails_to(db, account.email)]


async def test_newer_reset_token_invalidates_the_older_and_tokens_expire(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await signed_up(client, db)
    await client.post("/api/v1/auth/password-reset/request", json={"email": account.email})
    first = await token_from_email(db, account.email, "password_reset")
    frozen_clock.advance(timedelta(seconds=1))
    await client.post("/api/v1/auth/password-reset/request", json={"email": account.email})
    second = await token_from_email(db, account.email, "password_reset")
    assert first != second
    old = await client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": first, "new_password": strong_password()},
    )
    assert old.json()["code"] == "token_invalid"
    frozen_clock.advance(timedelta(minutes=31))
    expired = await client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": second, "new_password": strong_password()},
    )
    assert expired.json()["code"] == "token_invalid"


async def test_change_password_revokes_other_sessions_only(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signed_up(client, db)
    other = (await login(client, account)).json()["token"]
    client.cookies.clear()
    wrong = await client.post(
        "/api/v1/me/password",
        json={"current_password": "Not-my-password-1", "new_password": strong_password()},
        headers=account.auth,
    )
    assert wrong.status_code == 400
    new_password = strong_password()
    done = await client.post(
        "/api/v1/me/password",
        json={"current_password": account.password, "new_password": new_password},
        headers=account.auth,
    )
    assert done.status_code == 204, done.text
    assert (await client.get("/api/v1/me", headers=account.auth)).status_code == 200
    gone = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {other}"})
    assert gone.status_code == 401
    assert "password_changed" in [e.template for e in await emails_to(db, account.email)]


async def test_sessions_list_and_revoke(client: httpx.AsyncClient, db: Database) -> None:
    account = await signed_up(client, db)
    stranger = await signed_up(client, db)
    other = (
        await client.post(
            "/api/v1/auth/login",
            json={"email": account.email, "password": account.password},
            headers={"User-Agent": "second-device/1.0"},
        )
    ).json()["token"]
    client.cookies.clear()
    listed = await client.get("/api/v1/me/sessions", headers=account.auth)
    assert listed.status_code == 200
    sessions = listed.json()
    assert len(sessions) == 2
    current = [s for s in sessions if s["current"]]
    assert len(current) == 1
    assert {s["user_agent"] for s in sessions} >= {"second-device/1.0"}
    assert all(s["ip"] == "127.0.0.1" for s in sessions)
    other_id = next(s["id"] for s in sessions if not s["current"])

    # Another user's session id: 404, as if it did not exist.
    foreign = await client.delete(f"/api/v1/me/sessions/{other_id}", headers=stranger.auth)
    assert foreign.status_code == 404
    assert foreign.json()["code"] == "not_found"

    assert (
        await client.get("/api/v1/me", headers={"Authorization": f"Bearer {other}"})
    ).status_code == 200
    revoked = await client.delete(f"/api/v1/me/sessions/{other_id}", headers=account.auth)
    assert revoked.status_code == 204
    # Cached a moment ago, refused now: revocation invalidates the cache at once.
    gone = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {other}"})
    assert gone.status_code == 401
    assert len((await client.get("/api/v1/me/sessions", headers=account.auth)).json()) == 1


async def test_idle_timeout_and_absolute_lifetime(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await signed_up(client, db)
    # Activity within the idle window keeps the session alive...
    for _ in range(4):
        frozen_clock.advance(timedelta(minutes=14))
        assert (await client.get("/api/v1/me", headers=account.auth)).status_code == 200
    # ...15 idle minutes end it (HIPAA automatic logoff).
    frozen_clock.advance(timedelta(minutes=15, seconds=1))
    assert (await client.get("/api/v1/me", headers=account.auth)).status_code == 401

    fresh = (await login(client, account)).json()["token"]
    client.cookies.clear()
    auth = {"Authorization": f"Bearer {fresh}"}
    for _ in range(12 * 6):  # every 10 minutes for 12 hours
        frozen_clock.advance(timedelta(minutes=10))
        response = await client.get("/api/v1/me", headers=auth)
        if response.status_code == 401:
            break
    assert response.status_code == 401  # the absolute 12-hour limit, activity or not


async def test_clinic_idle_timeout_can_be_lowered_to_five_minutes(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    account = await signed_up(client, db)
    too_low = await client.patch(
        f"/api/v1/orgs/{account.org_id}", json={"idle_timeout_minutes": 4}, headers=account.auth
    )
    assert too_low.status_code == 422
    lowered = await client.patch(
        f"/api/v1/orgs/{account.org_id}", json={"idle_timeout_minutes": 5}, headers=account.auth
    )
    assert lowered.status_code == 200
    fresh = (await login(client, account)).json()["token"]
    client.cookies.clear()
    auth = {"Authorization": f"Bearer {fresh}"}
    frozen_clock.advance(timedelta(minutes=4))
    assert (await client.get("/api/v1/me", headers=auth)).status_code == 200
    frozen_clock.advance(timedelta(minutes=5, seconds=1))
    assert (await client.get("/api/v1/me", headers=auth)).status_code == 401


async def test_last_seen_is_not_written_on_every_request(
    client: httpx.AsyncClient, db: Database, frozen_clock: FrozenClock
) -> None:
    from sqlalchemy import select

    from aayu_accounts.models.auth_session import AuthSession

    account = await signed_up(client, db)
    async with db.session_scope(write=False) as session:
        before = await session.scalar(
            select(AuthSession.last_seen_at).where(AuthSession.user_id == account.user_id)
        )
    for _ in range(5):
        frozen_clock.advance(timedelta(seconds=5))
        assert (await client.get("/api/v1/me", headers=account.auth)).status_code == 200
    async with db.session_scope(write=False) as session:
        during = await session.scalar(
            select(AuthSession.last_seen_at).where(AuthSession.user_id == account.user_id)
        )
    assert during == before  # 25 s of activity: no write yet
    frozen_clock.advance(timedelta(seconds=40))
    assert (await client.get("/api/v1/me", headers=account.auth)).status_code == 200
    async with db.session_scope(write=False) as session:
        after = await session.scalar(
            select(AuthSession.last_seen_at).where(AuthSession.user_id == account.user_id)
        )
    assert after is not None
    assert before is not None
    assert after > before


async def test_cookie_sign_in_and_logout(client: httpx.AsyncClient, db: Database) -> None:
    account = await signed_up(client, db)
    response = await login(client, account)
    token = response.json()["token"]
    csrf = response.cookies["aayu_csrf"]
    client.cookies.clear()
    # httpx keeps Secure cookies only over https; send them as a browser would.
    cookie = {"Cookie": f"aayu_session={token}; aayu_csrf={csrf}"}
    assert (await client.get("/api/v1/me", headers=cookie)).status_code == 200
    # An unsafe request with the cookie needs the CSRF header (double submit).
    forged = await client.post("/api/v1/auth/logout", headers=cookie)
    assert forged.status_code == 403
    out = await client.post("/api/v1/auth/logout", headers={**cookie, "X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert any(c.startswith("aayu_session=") for c in out.headers.get_list("set-cookie"))
    assert (await client.get("/api/v1/me", headers=cookie)).status_code == 401


async def test_reset_requests_from_one_address_are_limited(client: httpx.AsyncClient) -> None:
    statuses = [
        (
            await client.post(
                "/api/v1/auth/password-reset/request", json={"email": unique_email("probe")}
            )
        ).status_code
        for _ in range(11)
    ]
    assert statuses[:10] == [202] * 10
    assert statuses[10] == 429
    limited = await client.post(
        "/api/v1/auth/password-reset/request", json={"email": unique_email("probe")}
    )
    assert limited.json()["code"] == "too_many_attempts"
    assert int(limited.headers["retry-after"]) > 0


async def test_a_queued_reset_counts_as_a_use_of_its_data_key(
    client: httpx.AsyncClient, db: Database
) -> None:
    """The reset job carries the address sealed under the data key: while it waits, that key
    version is in use (``keys retire data N`` is refused); once it ran, it no longer counts."""

    async def uses() -> Counter[int]:
        async with db.session_scope(write=False) as session:
            # The application's tables only (other tests register sample models too).
            return await rows_per_version(session, KeyPurpose.DATA, Base.metadata)

    before = await uses()
    await client.post(
        "/api/v1/auth/password-reset/request", json={"email": unique_email("queued-reset")}
    )
    current = get_keyring().current(KeyPurpose.DATA).version
    waiting = await uses()
    assert waiting[current] == before[current] + 1
    await run_reset_requests(db)
    assert (await uses())[current] == before[current]


async def test_a_revocation_that_overtakes_a_lookup_is_not_undone_by_the_cache(
    app: FastAPI, client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another instance revokes the session while this one reads it from the database: its
    # message lands between the read and the caching. The request was already in flight and
    # is answered from its read, but the read must not be cached, or the revoked session
    # would keep working here until the entry expires.
    account = await signed_up(client, db)
    cache = app.state.identity.sessions
    cache.apply(Invalidation(everything=True))
    token_hash = hash_token(account.token)
    real_load = session_service.load_principal

    async def overtaken(*args: Any, **kwargs: Any) -> CachedPrincipal | None:
        entry = await real_load(*args, **kwargs)
        cache.apply(Invalidation(token_hashes={token_hash}))
        return entry

    monkeypatch.setattr(session_service, "load_principal", overtaken)
    assert (await client.get("/api/v1/me", headers=account.auth)).status_code == 200
    assert cache.get(token_hash) is None
    monkeypatch.setattr(session_service, "load_principal", real_load)
    assert (await client.get("/api/v1/me", headers=account.auth)).status_code == 200
    assert cache.get(token_hash) is not None  # an undisturbed read is cached
