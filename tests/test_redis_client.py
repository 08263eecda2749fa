"""Every Redis client of the service, server or CLI, comes from ``kit.redis_client`` and gives
up after ``AAYU_REDIS_TIMEOUT_SECONDS``: a Redis that takes connections and never answers (a
partition, a frozen server) costs a command that long, not redis-py's own five seconds."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from aayu_accounts.config import Settings
from aayu_accounts.kit.redis_client import create_redis
from aayu_accounts.rollout.backup import cache
from aayu_accounts.rollout.flag import fanout
from tests.fixtures.services import silent_redis

SRC = Path(__file__).resolve().parents[1] / "src" / "aayu_accounts"
TIMEOUT = 0.2
# redis-py's default socket timeout; the bound below must sit well under it to mean anything.
REDIS_PY_DEFAULT = 5.0


def _settings(url: str) -> Settings:
    return Settings.model_validate(
        {"env": "test", "redis_url": url, "redis_timeout_seconds": TIMEOUT}
    )


def test_no_redis_client_is_built_outside_the_kit() -> None:
    builders = []
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).as_posix() == "kit/redis_client.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in {"from_url", "from_pool"}:
                owner = ast.unparse(node.value)
                if "Redis" in owner or "redis" in owner:
                    builders.append(f"{path.relative_to(SRC)}:{node.lineno} {owner}")
    assert builders == []


async def test_a_client_gives_up_after_the_configured_timeout() -> None:
    with silent_redis() as url:
        client = create_redis(_settings(url))
        assert client is not None
        started = time.monotonic()
        with pytest.raises(RedisTimeout):
            await client.ping()
        took = time.monotonic() - started
        await client.aclose()
    assert took < REDIS_PY_DEFAULT / 2


async def test_a_cli_announcement_to_a_silent_redis_ends_after_the_timeout() -> None:
    # What `flags set` and `rollback` do after their commit: announce on Redis, best effort.
    engine = create_async_engine("sqlite+aiosqlite://")
    with silent_redis() as url:
        started = time.monotonic()
        async with (
            fanout.redis_publishing(_settings(url), "aayu:flags"),
            AsyncSession(engine) as session,
            session.begin(),
        ):
            await fanout.announce(session, 7)
        took = time.monotonic() - started
    await engine.dispose()
    assert took < REDIS_PY_DEFAULT / 2


async def test_cache_purge_against_a_silent_redis_fails_after_the_timeout() -> None:
    with silent_redis() as url:
        settings = _settings(url).model_copy(update={"redis_prefix": "silent:"})
        started = time.monotonic()
        with pytest.raises(RedisTimeout):
            await cache.purge(settings)
        took = time.monotonic() - started
    assert took < REDIS_PY_DEFAULT / 2
