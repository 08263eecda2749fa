"""What a signed call costs: no database on a warm cache, one lookup per expiry, one Redis
round trip per event-loop turn for the nonces; and a disable or rotation that reaches another
instance at once instead of after the credentials cache's lifetime (issues 11 and 4)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as redis_asyncio
from fastapi import FastAPI
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from aayu_accounts.api_security.request_signing.directory import ClientDirectory
from aayu_accounts.api_security.request_signing.nonces import MemoryNonceStore, RedisNonceStore
from aayu_accounts.api_security.runtime import ApiSecurityRuntime
from aayu_accounts.api_security.service_client.schemas import IssuedSecret
from aayu_accounts.client.signing import secret_key, sign_headers
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.models.service_client import ServiceClient
from tests.api_security.conftest import SigningClient, create_client
from tests.client.server import server_stack
from tests.faults.proxy import TcpProxy
from tests.fixtures.services import REDIS_URL, redis_available, require
from tests.identity.accounts.helpers import Account, signed_up

INTROSPECT = "/api/v1/service/sessions/introspect"
ENTITLEMENTS = "/api/v1/service/entitlements/check"
FLAGS = "/api/v1/service/flags/evaluate"


@contextmanager
def units_of_work() -> Iterator[list[int]]:
    """Counts database sessions that take a connection (a pooled checkout on a real engine;
    the test database's one connection here)."""
    taken = [0]

    def began(*_args: Any) -> None:
        taken[0] += 1

    event.listen(Session, "after_begin", began)
    try:
        yield taken
    finally:
        event.remove(Session, "after_begin", began)


@pytest_asyncio.fixture(loop_scope="session")
async def account(client: httpx.AsyncClient, db: Database) -> AsyncIterator[Account]:
    yield await signed_up(client, db)


async def test_warm_signed_calls_take_no_database_connection(
    signer: SigningClient, account: Account
) -> None:
    calls = [
        (INTROSPECT, {"token": account.token}),
        (ENTITLEMENTS, {"org_id": account.org_id, "user_id": account.user_id, "feature": "notes"}),
        (FLAGS, {"user_id": account.user_id, "org_id": account.org_id}),
    ]
    for path, payload in calls:  # cold: credentials, session, memberships, billing loaded
        response = await signer.post(path, payload)
        assert response.status_code == 200, response.text
    with units_of_work() as taken:
        for _ in range(3):
            for path, payload in calls:
                response = await signer.post(path, payload)
                assert response.status_code == 200, response.text
    assert taken[0] == 0
    # The cached answer is the one the database gives.
    answer = (await signer.post(INTROSPECT, {"token": account.token})).json()
    assert answer["active"] is True
    assert answer["org_ids"] == [account.org_id]


async def test_concurrent_misses_share_one_lookup(app: FastAPI, issued: IssuedSecret) -> None:
    directory = app.state.api_security.directory
    directory.forget()
    with units_of_work() as taken:
        found = await asyncio.gather(*(directory.lookup(issued.key_id) for _ in range(20)))
    assert {credentials.key_id for credentials in found} == {issued.key_id}
    assert taken[0] == 1
    with units_of_work() as taken:
        assert (await directory.lookup(issued.key_id)) is found[0]
    assert taken[0] == 0


async def test_an_entry_in_use_is_refreshed_before_it_lapses(
    app: FastAPI, issued: IssuedSecret
) -> None:
    directory = app.state.api_security.directory
    directory.ttl_seconds = 2.0
    directory.forget()
    first = await directory.lookup(issued.key_id)
    await asyncio.sleep(1.1)  # past half its lifetime
    with units_of_work() as taken:
        assert (await directory.lookup(issued.key_id)) is first  # answered from the cache
        refreshing = list(directory._loading.values())
        assert len(refreshing) == 1
        await refreshing[0]
    assert taken[0] == 1
    await asyncio.sleep(1.1)  # the first load has lapsed, the refreshed one has not
    with units_of_work() as taken:
        again = await directory.lookup(issued.key_id)
    assert taken[0] == 0
    assert again is not first
    await asyncio.gather(*directory._loading.values())  # a refresh it may have started
    assert again.key_id == issued.key_id


async def test_a_lookup_racing_a_change_is_not_cached(app: FastAPI, issued: IssuedSecret) -> None:
    directory = app.state.api_security.directory
    directory.forget()
    racing = asyncio.ensure_future(directory.lookup(issued.key_id))
    await asyncio.sleep(0)  # the lookup has started
    directory.forget(issued.key_id)  # what a rotation's commit does
    assert (await racing) is not None
    with units_of_work() as taken:
        await directory.lookup(issued.key_id)
    assert taken[0] == 1  # loaded again: the racing answer was not kept


async def test_nonces_of_one_turn_go_to_redis_in_one_round_trip() -> None:
    require("Redis", redis_available())
    redis = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        prefix = f"aayu-test:{uuid.uuid4().hex[:12]}:"
        one = RedisNonceStore(redis, prefix, fallback=MemoryNonceStore())
        other = RedisNonceStore(redis, prefix, fallback=MemoryNonceStore())
        nonces = [f"nonce-{n:012d}" for n in range(50)]
        first = await asyncio.gather(*(one.first_use("ak_1", n, 600) for n in nonces))
        assert all(first)
        assert one.round_trips == 1
        # The same nonce twice in one turn (two instances): exactly one is new.
        twice = await asyncio.gather(
            one.first_use("ak_2", "nonce-dddddddddddd", 600),
            other.first_use("ak_2", "nonce-dddddddddddd", 600),
        )
        assert sorted(twice) == [False, True]
        # Replays of the first batch, sent to the other instance, are all caught.
        again = await asyncio.gather(*(other.first_use("ak_1", n, 600) for n in nonces))
        assert not any(again)
        await one.aclose()
        await other.aclose()
    finally:
        await redis.aclose()


async def test_the_directory_listens_for_changes_with_redis(app: FastAPI) -> None:
    runtime: ApiSecurityRuntime = app.state.api_security
    if runtime.redis is None:
        pytest.skip("the listener runs with Redis only")
    await asyncio.wait_for(runtime.directory.listening.wait(), 5)


@pytest.mark.timeout(60)
async def test_while_deaf_every_lookup_goes_to_the_database(db: Database) -> None:
    """Credentials are cached only while the directory hears other instances' changes: with
    its subscription lost, a client disabled on another instance is refused at once."""
    require("Redis", redis_available())
    issued = await create_client(db, f"deaf-{uuid.uuid4().hex[:8]}")
    options = redis_asyncio.Redis.from_url(REDIS_URL).connection_pool.connection_kwargs
    async with TcpProxy(str(options["host"]), int(options["port"])) as proxy:
        redis = redis_asyncio.Redis(
            host="127.0.0.1", port=proxy.port, socket_connect_timeout=1, socket_timeout=1
        )
        # Cached for an hour: only deafness can explain a lookup reaching the database.
        directory = ClientDirectory(
            db, 3600, redis=redis, channel=f"aayu-test:clients:{uuid.uuid4().hex}"
        )
        directory.start()
        try:
            await asyncio.wait_for(directory.listening.wait(), 10)
            first = await directory.lookup(issued.key_id)
            with units_of_work() as taken:
                assert await directory.lookup(issued.key_id) is first
            assert taken[0] == 0  # listening: served from memory

            proxy.cut()

            async def deaf() -> bool:
                return directory.deaf

            await _within(10, deaf)
            with units_of_work() as taken:
                for _ in range(3):
                    found = await directory.lookup(issued.key_id)
                    assert found is not None
                    assert not found.disabled
            assert taken[0] == 3  # deaf: the database, every time

            # Disabled on another instance: the row changes, no message can arrive.
            async with db.session_scope() as session:
                await session.execute(
                    update(ServiceClient)
                    .where(ServiceClient.key_id == issued.key_id)
                    .values(disabled_at=clock.now())
                )
            found = await directory.lookup(issued.key_id)
            assert found is not None
            assert found.disabled  # refused at once

            proxy.restore()
            await asyncio.wait_for(directory.listening.wait(), 10)
            again = await directory.lookup(issued.key_id)
            with units_of_work() as taken:
                assert await directory.lookup(issued.key_id) is again
            assert taken[0] == 0  # listening again: cached again
        finally:
            await directory.stop()
            await redis.aclose()


async def test_without_redis_the_directory_caches(db: Database) -> None:
    issued = await create_client(db, f"local-{uuid.uuid4().hex[:8]}")
    directory = ClientDirectory(db, 3600)
    directory.start()  # nothing to listen to
    try:
        assert not directory.deaf
        first = await directory.lookup(issued.key_id)
        with units_of_work() as taken:
            assert await directory.lookup(issued.key_id) is first
        assert taken[0] == 0
    finally:
        await directory.stop()


# --- across processes: the CLI changes a client while a server has it cached ----------------


async def _flags(http: httpx.AsyncClient, url: str, key_id: str, secret: str) -> httpx.Response:
    body = json.dumps({"user_id": "u-1"}).encode()
    headers = {
        "Content-Type": "application/json",
        **sign_headers(
            key_id=key_id, secret=secret_key(secret), method="POST", path=FLAGS, body=body
        ),
    }
    return await http.post(url + FLAGS, content=body, headers=headers)


async def _within(seconds: float, check: Any) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_rotate_and_disable_reach_a_running_server_at_once(
    backend: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("instances share client changes through Redis, configured on PostgreSQL runs")
    async with server_stack(backend, tmp_path) as stack:
        # Cached for an hour: only the published change can explain what follows.
        stack.env["AAYU_CLIENT_CACHE_SECONDS"] = "3600"
        server = stack.server()
        server.start()
        old_key, old_secret = stack.key_id, stack.secret
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await _flags(http, server.url, old_key, old_secret)).status_code == 200

            rotated = stack.cli("clients", "rotate", "scribe-backend", "--json")
            assert rotated.returncode == 0, rotated.stderr
            new_secret = json.loads(rotated.stdout)["secret"]

            async def new_secret_works() -> bool:
                response = await _flags(http, server.url, old_key, new_secret)
                return response.status_code == 200

            await _within(2.0, new_secret_works)
            # The old secret keeps its grace period.
            assert (await _flags(http, server.url, old_key, old_secret)).status_code == 200

            disabled = stack.cli("clients", "disable", "scribe-backend")
            assert disabled.returncode == 0, disabled.stderr

            async def refused() -> bool:
                response = await _flags(http, server.url, old_key, new_secret)
                return response.status_code == 401

            await _within(2.0, refused)
            last = await _flags(http, server.url, old_key, new_secret)
            assert last.json()["code"] == "signature_unknown_key"
