"""Two app instances sharing PostgreSQL and Redis: one set of limits, revocations reach both."""

from __future__ import annotations

import asyncio

import pytest

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from tests.identity.accounts.conftest import AppFactory
from tests.identity.accounts.helpers import login, signed_up


@pytest.fixture
def needs_redis(settings: Settings) -> None:
    if not settings.redis_url:
        pytest.skip("shared state between instances needs Redis (the PostgreSQL backend)")


@pytest.mark.usefixtures("needs_redis")
async def test_revocation_on_one_instance_reaches_the_other(
    app_with: AppFactory, db: Database
) -> None:
    async with app_with() as first, app_with() as second:
        account = await signed_up(first, db)
        # The second instance caches the session on first use...
        assert (await second.get("/api/v1/me", headers=account.auth)).status_code == 200
        assert (await first.post("/api/v1/auth/logout", headers=account.auth)).status_code == 204
        # ...and drops it when the first one publishes the revocation (well before the TTL).
        status = 200
        for _ in range(100):
            status = (await second.get("/api/v1/me", headers=account.auth)).status_code
            if status == 401:
                break
            await asyncio.sleep(0.02)
        assert status == 401


@pytest.mark.usefixtures("needs_redis")
async def test_failed_sign_ins_count_across_instances(app_with: AppFactory, db: Database) -> None:
    async with app_with() as first, app_with() as second:
        account = await signed_up(first, db)
        bad = {"email": account.email, "password": "Not-the-password-1"}
        for client in (first, second, first):
            assert (await client.post("/api/v1/auth/login", json=bad)).status_code == 401
        needs = await login(second, account)
        assert needs.json()["code"] == "captcha_required"
        # A challenge from one instance is accepted by the other (one shared key and store).
        challenge = (await first.get("/api/v1/auth/captcha")).json()
        from tests.identity.accounts.helpers import solve_captcha

        solved = await login(second, account, captcha=solve_captcha(challenge))
        assert solved.status_code == 200, solved.text
