"""The identity runtime's Redis client (session-cache invalidations) uses the shared client
settings: a silent Redis fails a revocation's publish within the dependency timeout."""

from __future__ import annotations

from pathlib import Path

from aayu_accounts.identity.runtime import IdentityRuntime
from aayu_accounts.kit.resilience import REDIS, dependency
from tests.fixtures.database import make_settings
from tests.fixtures.services import REDIS_URL, redis_available, require


async def test_the_session_cache_client_has_timeouts(tmp_path: Path) -> None:
    require("Redis", redis_available())
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/x.db",
        tmp_path,
        redis_url=REDIS_URL,
        argon2_memory_kib=1024,
        argon2_time_cost=1,
    )
    runtime = await IdentityRuntime.start(settings)
    try:
        options = runtime.redis.connection_pool.connection_kwargs
        timeout = dependency(REDIS).policy.timeout_seconds
        assert options["socket_timeout"] == timeout
        assert options["socket_connect_timeout"] == timeout
    finally:
        await runtime.close()
