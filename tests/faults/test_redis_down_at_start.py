"""An instance started while Redis is away starts and serves: sessions are looked up in the
database (the session cache stays off while it cannot hear other instances' revocations),
and once Redis is back the cache subscribes and caches again, with no restart."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis

from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.identity.auth_session.cache import SessionCache
from tests.faults.proxy import TcpProxy
from tests.fixtures.services import REDIS_URL
from tests.identity.accounts.helpers import signed_up


@pytest.mark.timeout(60)
async def test_an_instance_starts_without_redis_and_takes_it_up_when_it_returns(
    backend: str, settings: Settings, db: Database, keyring: Keyring
) -> None:
    if backend != "postgresql":
        pytest.skip("Redis is paired with PostgreSQL (production mode); SQLite runs in-process")
    # Signed in through an instance that has Redis (sign-ins while Redis is away need a
    # CAPTCHA from everyone, which is tested with the outage itself).
    first = create_app(settings, database=db, keyring=keyring)
    async with LifespanManager(first), _client(first) as client:
        account = await signed_up(client, db)

    upstream = Redis.from_url(REDIS_URL).connection_pool.connection_kwargs
    async with TcpProxy(
        str(upstream.get("host", "127.0.0.1")), int(upstream.get("port", 6379))
    ) as proxy:
        proxy.cut()
        away = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}/0"})
        second = create_app(away, database=db, keyring=keyring)
        async with LifespanManager(second), _client(second) as client:
            cache: SessionCache = second.state.identity.sessions
            me = await client.get("/api/v1/me", headers=account.auth)
            assert me.status_code == 200, me.text
            assert cache.deaf
            assert len(cache) == 0  # deaf: nothing served from memory

            proxy.restore()
            for _ in range(200):  # the listener retries every second
                if not cache.deaf:
                    break
                await asyncio.sleep(0.1)
            assert not cache.deaf
            me = await client.get("/api/v1/me", headers=account.auth)
            assert me.status_code == 200, me.text
            assert len(cache) == 1  # listening again: cached again


def _client(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
