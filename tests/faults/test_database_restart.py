"""PostgreSQL really restarted under a write load: nothing acknowledged is lost, nothing hangs,
the service recovers by itself.

tests/faults/test_database_outage.py takes the database away at the network (a proxy resets or
silences connections). This test restarts the server itself, on a cluster of its own
(tests/faults/private_postgres.py): every backend is terminated by the server — including
those in the middle of a sign-up's transaction — the pool's connections all die at once, and
with ``-m immediate`` the restart is a crash whose committed transactions come back only from
the WAL. Two restarts under the same traffic: ``fast`` (an operator's restart), then
``immediate``.

Checked: every sign-up answered 202 is stored (looked up by its address, not just counted);
a refused one says ``dependency_unavailable`` (503), never a 500; no request outlives its
timeouts; after each restart sign-ups succeed again without anyone touching the service.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from aayu_accounts import migrate
from aayu_accounts.app import create_app
from aayu_accounts.db import create_engine
from aayu_accounts.identity.user import repository as users
from aayu_accounts.kit import resilience
from tests.faults.private_postgres import private_postgres
from tests.faults.traffic import REGISTER, quick_failing_database, sign_up_body
from tests.faults.traffic import clients as traffic_clients

CLIENTS = 4


@dataclass
class Outcome:
    email: str
    started: float
    ended: float
    status: int
    code: str | None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


async def _register(client: httpx.AsyncClient) -> Outcome:
    email, body = sign_up_body("restart")
    started = time.monotonic()
    response = await client.post(REGISTER, json=body)
    code = response.json().get("code") if response.status_code >= 400 else None
    return Outcome(email, started, time.monotonic(), response.status_code, code)


@pytest.mark.committing
@pytest.mark.timeout(150)
async def test_restarts_under_write_load_lose_no_acknowledged_write(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("a PostgreSQL cluster of the test's own")
    # Each client signs up every 50 ms, over the 100 per minute an address may send: the
    # limit is not what this test is about (only the database's answers are).
    monkeypatch.setenv("AAYU_RATE_LIMIT_DEFAULT", "100000/minute")
    with private_postgres() as cluster:
        admin = create_async_engine(cluster.url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text('CREATE DATABASE "aayu"'))
        await admin.dispose()
        url = make_url(cluster.url).set(database="aayu").render_as_string(hide_password=False)
        settings = quick_failing_database(url, tmp_path)
        engine = create_engine(settings)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

        app = create_app(settings)
        async with LifespanManager(app):
            clients = traffic_clients(app, CLIENTS, first_host=20)
            outcomes: list[Outcome] = []
            stop = asyncio.Event()

            async def traffic(client: httpx.AsyncClient) -> None:
                while not stop.is_set():
                    outcomes.append(await _register(client))
                    await asyncio.sleep(0.05)

            workers = [asyncio.create_task(traffic(c)) for c in clients]
            restarts: list[tuple[float, float]] = []
            await asyncio.sleep(1.5)
            for mode in ("fast", "immediate"):
                began = time.monotonic()
                await asyncio.to_thread(cluster.restart, mode)
                restarts.append((began, time.monotonic()))
                # The breaker's reset (1 s) plus a health check (0.3 s) bound the recovery;
                # the rest is margin for a loaded machine.
                await asyncio.sleep(5.0)
            stopped_at = time.monotonic()
            stop.set()
            await asyncio.gather(*workers)
            for client in clients:
                await client.aclose()

            # Every acknowledged sign-up is there, found by its address (blind index).
            accepted = [o for o in outcomes if o.status == 202]
            async with app.state.db.session_scope(write=False) as session:
                missing = [
                    o.email for o in accepted if await users.get_by_email(session, o.email) is None
                ]
            assert not missing, f"{len(missing)} acknowledged sign-ups lost"

        refused = [o for o in outcomes if o.status != 202]
        # The restarts were felt (otherwise the test proves nothing) ...
        assert refused, "no request met a restart"
        # ... and each refusal said why, with the stable code: none was a 500.
        assert {(o.status, o.code) for o in refused} == {(503, "dependency_unavailable")}, [
            (o.status, o.code) for o in refused
        ]
        # No request hung: none outlived a statement timeout plus a connect timeout.
        worst = settings.db_statement_timeout_seconds + settings.db_connect_timeout_seconds
        assert max(o.seconds for o in outcomes) < worst + 2.5  # margin for a loaded machine
        # Recovery on its own after each restart: whatever ran from 3 s after it until the next
        # disturbance (the next restart, or the end) was served.
        ends = [began for began, _ in restarts[1:]] + [stopped_at]
        for (_, restarted), until in zip(restarts, ends, strict=True):
            settled = [o for o in outcomes if o.started >= restarted + 3.0 and o.ended < until]
            assert settled, "no traffic after a restart"
            assert all(o.status == 202 for o in settled), [
                (round(o.started - restarted, 2), o.status) for o in settled
            ]
        assert resilience.dependency("database").state == "closed"
        assert len(accepted) > 10
