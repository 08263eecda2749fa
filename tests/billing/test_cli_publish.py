"""A billing command (``aayu-accounts billing tick``) exits right after its commit: the
entitlement-cache invalidation it publishes must reach Redis before the process ends."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis

from aayu_accounts import migrate
from aayu_accounts.billing.entitlement import cache as entitlement_cache
from aayu_accounts.billing.entitlement.cache import CHANNEL_SUFFIX
from aayu_accounts.cli.billing_cli import _run
from aayu_accounts.config import get_settings
from aayu_accounts.db import Database, create_engine
from tests.fixtures.database import make_settings
from tests.fixtures.services import REDIS_URL, redis_available, require


def test_a_command_publishes_its_invalidations_before_it_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("Redis", redis_available())
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    prefix = f"aayu-test:{uuid.uuid4().hex[:12]}:"

    async def migrated() -> None:
        engine = create_engine(make_settings(url, tmp_path))
        await migrate.upgrade(engine)
        await engine.dispose()

    asyncio.run(migrated())
    for name, value in {
        "AAYU_DATABASE_URL": url,
        "AAYU_REDIS_URL": REDIS_URL,
        "AAYU_REDIS_PREFIX": prefix,
        "AAYU_VAR_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    client = redis.Redis.from_url(REDIS_URL)
    listener = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    listener.subscribe(f"{prefix}{CHANNEL_SUFFIX}")

    async def work(_db: Database) -> None:
        entitlement_cache.cache.committed("org-after-commit")  # what a committed change calls

    try:
        _run(work)
        message = None
        for _ in range(20):  # the command has returned: the message is already in Redis or lost
            message = listener.get_message(timeout=0.1)
            if message is not None:
                break
        assert message is not None, "the invalidation was lost when the command exited"
        assert b"org-after-commit" in message["data"]
    finally:
        listener.close()
        get_settings.cache_clear()
