"""Two app instances sharing PostgreSQL and Redis: one set of limits, revocations reach both.

Each instance gets its own connections from a real pool, as two processes would, on a database
of the test's own.
"""

from __future__ import annotations

import asyncio

from aayu_accounts.db import Database
from tests.identity.accounts.conftest import AppFactory
from tests.identity.accounts.helpers import login, signed_up, solve_captcha


async def test_revocation_on_one_instance_reaches_the_other(
    instance: AppFactory, shared_db: Database
) -> None:
    async with instance() as first, instance() as second:
        account = await signed_up(first, shared_db)
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


async def test_failed_sign_ins_count_across_instances(
    instance: AppFactory, shared_db: Database
) -> None:
    async with instance() as first, instance() as second:
        account = await signed_up(first, shared_db)
        bad = {"email": account.email, "password": "Not-the-password-1"}
        for client in (first, second, first):
            assert (await client.post("/api/v1/auth/login", json=bad)).status_code == 401
        needs = await login(second, account)
        assert needs.json()["code"] == "captcha_required"
        # A challenge from one instance is accepted by the other (one shared key and store).
        challenge = (await first.get("/api/v1/auth/captcha")).json()
        solved = await login(second, account, captcha=solve_captcha(challenge))
        assert solved.status_code == 200, solved.text
