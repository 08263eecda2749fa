"""Two app instances sharing the database and Redis: a billing change committed through one
reaches the other's entitlement cache at once, not when the cache lifetime runs out.

Each instance has its own entitlement cache (``app.state.entitlement_cache``, bound to its
requests) and its own Redis subscription, as two processes would; the lifetime is an hour, so
only the published invalidation can explain the second instance's new answer. Embedded mode
(SQLite, no Redis) has one process, where the in-process drop is all there is.

Also: one usage event sent at the same moment to both instances (separate connections from a
real pool, through the signed endpoint) is recorded once; invalidations are published after
the commit only, once per org.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from aayu_accounts.api_security.service_client import service as client_service
from aayu_accounts.app import create_app
from aayu_accounts.audit.service import Actor
from aayu_accounts.billing.entitlement.cache import CHANNEL_SUFFIX
from aayu_accounts.billing.entitlement.cache import cache as default_cache
from aayu_accounts.billing.payment_provider.local import LocalProvider
from aayu_accounts.billing.runtime import BillingRuntime
from aayu_accounts.billing.subscription import service as subscription_service
from aayu_accounts.client.signing import secret_key, sign_headers
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.kit.redis_client import create_redis
from tests.identity.accounts.helpers import signed_up

CHECK = "/api/v1/service/entitlements/check"
USAGE = "/api/v1/service/usage"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "argon2_memory_kib": 1024,
            "argon2_time_cost": 1,
            "altcha_max_number": 5000,
            "entitlement_cache_seconds": 3600.0,
        }
    )


Instance = Callable[[], AbstractAsyncContextManager[tuple[httpx.AsyncClient, Any]]]


@pytest.fixture
def instance(own_db: Database, settings: Settings, keyring: Keyring) -> Instance:
    """An app instance on the test's own database (a real pool: separate connections, as
    separate processes would have), sharing Redis with the others on the PostgreSQL backend."""
    own_settings = settings.model_copy(update={"database_url": str(own_db.engine.url)})

    @asynccontextmanager
    async def factory() -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
        application = create_app(own_settings, database=own_db, keyring=keyring)
        async with LifespanManager(application):
            transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c, application

    return factory


async def _service_key(db: Database) -> tuple[str, str]:
    async with db.session_scope() as session:
        issued = await client_service.create_client(
            session,
            name="scribe-two-instances",
            actor=Actor.system("test"),
            rate_limit_per_second=1000,
        )
    return issued.key_id, issued.secret


async def _signed(
    client: httpx.AsyncClient, key: tuple[str, str], path: str, body: dict[str, Any]
) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = sign_headers(
        key_id=key[0], secret=secret_key(key[1]), method="POST", path=path, body=raw
    )
    headers["Content-Type"] = "application/json"
    return await client.post(path, content=raw, headers=headers)


async def _subscribe(client: httpx.AsyncClient, owner: Any, seats: int = 1) -> None:
    response = await client.post(
        f"/api/v1/orgs/{owner.org_id}/subscription",
        json={
            "plan_id": "clinic_monthly",
            "seats": seats,
            "payment_method": "pm_card_visa",
            "trial": False,
        },
        headers=owner.auth,
    )
    assert response.status_code == 201, response.text


async def test_a_seat_change_on_one_instance_reaches_the_other(
    instance: Instance, own_db: Database, settings: Settings, billing: BillingRuntime
) -> None:
    if not settings.redis_url:
        pytest.skip("instances share invalidations through Redis (the PostgreSQL backend)")
    async with instance() as (first, first_app), instance() as (second, second_app):
        assert first_app.state.entitlement_cache is not second_app.state.entitlement_cache
        owner = await signed_up(first, own_db)
        await _subscribe(first, owner)
        key = await _service_key(own_db)
        body = {"org_id": owner.org_id, "user_id": owner.user_id, "feature": "notes"}

        async def remaining(client: httpx.AsyncClient) -> int:
            answer = await _signed(client, key, CHECK, body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["allowed"] is True
            return int(answer.json()["remaining"])

        # Both instances cache the snapshot (one seat: 400 notes a month).
        assert await remaining(second) == 400
        assert await remaining(first) == 400
        assert second_app.state.entitlement_cache.get(owner.org_id, 3600) is not None

        response = await first.patch(
            f"/api/v1/orgs/{owner.org_id}/subscription", json={"seats": 2}, headers=owner.auth
        )
        assert response.status_code == 200, response.text
        assert await remaining(first) == 800  # this instance dropped its own at the commit
        # The other drops it when the published invalidation arrives (well before the hour).
        seen = 400
        for _ in range(100):
            seen = await remaining(second)
            if seen == 800:
                break
            await asyncio.sleep(0.02)
        assert seen == 800

        # A change committed outside any app instance (the worker processing a webhook, a CLI
        # command) is published through a short-lived connection and reaches both.
        async with own_db.session_scope() as session:
            await subscription_service.change_subscription(
                session,
                LocalProvider(),
                actor=Actor.system("test"),
                role="owner",
                org_id=owner.org_id,
                seats=3,
            )
        for client in (first, second):
            for _ in range(100):
                seen = await remaining(client)
                if seen == 1200:
                    break
                await asyncio.sleep(0.02)
            assert seen == 1200
        await default_cache.drain()


async def test_one_usage_event_sent_at_once_to_two_instances_counts_once(
    instance: Instance, own_db: Database
) -> None:
    """The scribe backend retries a note's usage while the first delivery is still in
    flight, and the load balancer sends the copies to different instances: one is recorded."""
    async with instance() as (first, _), instance() as (second, _):
        owner = await signed_up(first, own_db)
        await _subscribe(first, owner)
        key = await _service_key(own_db)
        usage = {
            "event_id": "note-concurrent-0001",
            "org_id": owner.org_id,
            "user_id": owner.user_id,
            "metric": "notes",
            "quantity": 1,
            "occurred_at": clock.now().isoformat(),
        }
        answers = await asyncio.gather(
            *(_signed(client, key, USAGE, usage) for client in (first, second, first, second))
        )
        assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
        assert sorted(a.json()["recorded"] for a in answers) == [False, False, False, True]
        for client in (first, second):
            response = await client.get(f"/api/v1/orgs/{owner.org_id}/usage", headers=owner.auth)
            assert response.json()["metrics"]["notes"]["used"] == 1


async def test_invalidations_are_published_once_after_commit_never_on_rollback(
    db: Database, settings: Settings, billing: BillingRuntime
) -> None:
    """DESIGN rule 3: what a rolled-back transaction marked is not announced; a committed one
    is announced once per org however often the transaction marked it."""
    if not settings.redis_url:
        pytest.skip("publishing needs Redis (the PostgreSQL backend)")
    listener = create_redis(settings)
    assert listener is not None
    pubsub = listener.pubsub()
    await pubsub.subscribe(f"{settings.redis_prefix}{CHANNEL_SUFFIX}")
    try:
        with pytest.raises(RuntimeError):
            async with db.session_scope() as session:
                default_cache.mark(session, "org-rolled-back")
                raise RuntimeError("the change failed")
        async with db.session_scope() as session:
            for _ in range(3):
                default_cache.mark(session, "org-committed")
        await default_cache.drain()
        received = []
        for _ in range(20):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                received.append(json.loads(message["data"]))
            elif received:
                break
        assert received == [{"orgs": ["org-committed"]}]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()
