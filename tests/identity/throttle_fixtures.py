"""Throttle stores for tests: the one the ``settings`` fixture implies (memory on SQLite,
Redis on PostgreSQL), and a Redis-only settings for tests about sharing between instances."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from aayu_accounts.config import Settings
from aayu_accounts.identity.throttle import ThrottleStore, build_throttle_store
from tests.fixtures.database import make_settings
from tests.fixtures.services import REDIS_URL, redis_available, require


@pytest_asyncio.fixture(loop_scope="session")
async def throttle_store(settings: Settings) -> AsyncIterator[ThrottleStore]:
    store = build_throttle_store(settings)
    yield store
    await store.aclose()


@pytest.fixture
def redis_settings(tmp_path: Path) -> Settings:
    require("Redis", redis_available())
    return make_settings(
        "sqlite+aiosqlite://",
        tmp_path,
        redis_url=REDIS_URL,
        redis_prefix=f"aayu-test:{uuid.uuid4().hex[:12]}:",
    )


class TcpProxy:
    """A loopback TCP relay to Redis that a test can cut, to make Redis really go away."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        # Restarting binds the same port again: Redis "comes back" where clients look for it.
        self._server = await asyncio.start_server(
            self._relay, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers.update({writer, upstream_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._writers.difference_update({writer, upstream_writer})


@pytest_asyncio.fixture(loop_scope="session")
async def redis_proxy(redis_settings: Settings) -> AsyncIterator[TcpProxy]:
    target = urlsplit(str(redis_settings.redis_url))
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.stop()
