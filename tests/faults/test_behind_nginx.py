"""Two server processes behind nginx (round robin, loopback), sharing PostgreSQL and Redis.

What a deployment with several instances relies on, shown through a real load balancer:

* sign-in limits: failures spread over both processes count on one shared counter, so the
  lockout comes after the configured number of failures in total, not per process;
* signed requests: a nonce accepted by one process is refused when replayed through the other;
* flags: a change made through one process is applied by the other within a second (its poll
  is set to 30 s, so only the Redis announcement can explain it).

Every response says which upstream answered (``X-Upstream``), so the spread is checked, not
assumed. nginx is Debian's package, run as a child process (tests/faults/nginx.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from aayu_accounts.client.signing import secret_key, sign_headers
from aayu_accounts.db import Database
from aayu_accounts.models.user import User
from tests.client.server import ServerProcess, ServerStack, server_stack
from tests.faults.nginx import UPSTREAM_HEADER, nginx_binary, nginx_in_front
from tests.identity.accounts.helpers import Account, login

FLAGS = "/api/v1/service/flags/evaluate"
BLOCK_AFTER = 4


def _upstream(response: httpx.Response) -> str:
    return response.headers[UPSTREAM_HEADER]


async def _config_version(http: httpx.AsyncClient, server: ServerProcess) -> int:
    ready = (await http.get(server.url + "/ready", timeout=2)).json()
    return int(ready["checks"]["flags"]["config_version"])


async def _make_platform_admin(stack: ServerStack, account: Account) -> None:
    db = Database.from_settings(stack.settings)
    try:
        async with db.session_scope() as session:
            await session.execute(
                update(User).where(User.id == account.user_id).values(is_platform_admin=True)
            )
    finally:
        await db.dispose()


@pytest.mark.committing
@pytest.mark.timeout(150)
async def test_limits_nonces_and_flags_hold_across_two_processes_behind_nginx(
    backend: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("several server processes share PostgreSQL and Redis")
    nginx_binary()  # fails (CI) or skips before anything is started when nginx is missing
    async with server_stack(backend, tmp_path) as stack:
        stack.env.update(
            {
                "AAYU_LOGIN_PAIR_CAPTCHA_AFTER": "10",
                "AAYU_LOGIN_PAIR_BLOCK_AFTER": str(BLOCK_AFTER),
                "AAYU_FLAG_POLL_SECONDS": "30",
            }
        )
        servers = [stack.server(), stack.server()]
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        by_upstream = {f"127.0.0.1:{s.port}": s for s in servers}
        with nginx_in_front([s.port for s in servers], tmp_path / "nginx") as front:
            async with httpx.AsyncClient(base_url=front.url, timeout=10) as http:
                account = await stack.signed_in_account(front.url)

                # 1. Sign-in limits: wrong passwords alternate between the two processes.
                seen: set[str] = set()
                for _ in range(BLOCK_AFTER):
                    failed = await http.post(
                        "/api/v1/auth/login",
                        json={"email": account.email, "password": "Definitely-wrong-99"},
                    )
                    assert failed.json()["code"] == "invalid_credentials", failed.text
                    seen.add(_upstream(failed))
                assert seen == set(by_upstream), seen  # each process saw only some failures
                # The right password is refused now by either process: one counter for both.
                for server in servers:
                    async with httpx.AsyncClient(base_url=server.url, timeout=10) as direct:
                        blocked = await login(direct, account)
                    assert blocked.status_code == 429, (server.port, blocked.text)
                    assert blocked.json()["code"] == "too_many_attempts"

                # 2. A signed request's nonce, replayed through the other process.
                body = json.dumps({"user_id": "u-nginx-1"}).encode()
                headers = {
                    "Content-Type": "application/json",
                    **sign_headers(
                        key_id=stack.key_id,
                        secret=secret_key(stack.secret),
                        method="POST",
                        path=FLAGS,
                        body=body,
                    ),
                }
                accepted = await http.post(FLAGS, content=body, headers=headers)
                assert accepted.status_code == 200, accepted.text
                replayed = await http.post(FLAGS, content=body, headers=headers)
                assert _upstream(replayed) != _upstream(accepted)  # round robin: the other one
                assert replayed.status_code == 401
                assert replayed.json()["code"] == "signature_replayed"

                # 3. A flag change through one process, applied by the other within a second.
                admin = await stack.signed_in_account(front.url)
                await _make_platform_admin(stack, admin)
                relogged = await login(http, admin)
                assert relogged.status_code == 200, relogged.text
                token = relogged.json()["token"]
                http.cookies.clear()
                before = {
                    s.port: await _config_version(http, s) for s in servers
                }  # both processes agree before the change
                assert len(set(before.values())) == 1, before
                changed = await http.put(
                    "/api/v1/admin/flags/NEW_AUTH",
                    json={"enabled": True, "rollout_percent": 40},
                    headers={"Authorization": f"Bearer {token}"},
                )
                acknowledged = time.perf_counter()
                assert changed.status_code == 200, changed.text
                other = next(
                    s for a, s in by_upstream.items() if a != _upstream(changed)
                )  # the process that did not make the change
                applied_after = None
                while time.perf_counter() - acknowledged < 5:
                    if await _config_version(http, other) > before[other.port]:
                        applied_after = time.perf_counter() - acknowledged
                        break
                    await asyncio.sleep(0.01)
                assert applied_after is not None, "the other process never applied the change"
                assert applied_after < 1.0, applied_after
