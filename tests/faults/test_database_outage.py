"""PostgreSQL taken away under traffic: a loopback proxy in front of the real server resets or
silences every connection. Shows fast 503s during the outage, recovery on its own, no
acknowledged write lost, and the database-down alert fired (directly: the queue lives in that
database) and resolved (through the queue)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy import make_url

from aayu_accounts import migrate
from aayu_accounts.app import create_app
from aayu_accounts.db import create_engine
from aayu_accounts.jobs import Worker
from aayu_accounts.kit import resilience
from aayu_accounts.observability.alert.signing import SIGNATURE_HEADER, verify
from tests.faults.proxy import TcpProxy
from tests.faults.traffic import REGISTER, quick_failing_database, sign_up_body, stored_users
from tests.faults.traffic import clients as traffic_clients
from tests.fixtures.database import create_pg_database, drop_pg_database, make_settings
from tests.fixtures.services import postgres_available, require
from tests.observability.receiver import webhook_receiver

SECRET = "d" * 40


@dataclass
class Outcome:
    started: float
    ended: float
    status: int
    code: str | None
    # Whether the database breaker was open (with time left) when the request began.
    breaker_open: bool = False

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@pytest_asyncio.fixture(loop_scope="session")
async def own_database(tmp_path: Path) -> AsyncIterator[str]:
    """A database of this test's own: the test commits for real through the proxy."""
    require("PostgreSQL", postgres_available())
    name = f"aayu_fault_{uuid.uuid4().hex[:10]}"
    url = await create_pg_database(name)
    engine = create_engine(make_settings(url, tmp_path))
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    try:
        yield url
    finally:
        await drop_pg_database(name)


def _breaker_open_now() -> bool:
    breaker = resilience.dependency("database")
    left = breaker.opened_at + breaker.policy.breaker_reset_seconds - time.monotonic()
    # With time to spare: the request meets the breaker a moment later, at its first session.
    return breaker.state == "open" and left > 0.3


async def _register(client: httpx.AsyncClient) -> Outcome:
    started = time.monotonic()
    breaker_open = _breaker_open_now()
    _, body = sign_up_body("outage")
    response = await client.post(REGISTER, json=body)
    code = response.json().get("code") if response.status_code >= 400 else None
    return Outcome(started, time.monotonic(), response.status_code, code, breaker_open)


@pytest.mark.committing
@pytest.mark.timeout(90)
@pytest.mark.parametrize("hang", [False, True], ids=["reset", "partition"])
async def test_database_outage_fails_fast_recovers_loses_nothing_and_alerts(
    own_database: str, tmp_path: Path, hang: bool
) -> None:
    target = make_url(own_database)
    async with (
        TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy,
        webhook_receiver() as receiver,
    ):
        proxied = target.set(port=proxy.port).render_as_string(hide_password=False)
        settings = quick_failing_database(
            proxied,
            tmp_path,
            alert_webhook_urls=[receiver.url],
            alert_webhook_secret=SECRET,
            alert_group_wait_seconds=0,
            alert_log=False,
        )
        app = create_app(settings)
        async with LifespanManager(app):
            clients = traffic_clients(app, 5)
            outcomes: list[Outcome] = []
            stop = asyncio.Event()

            async def traffic(client: httpx.AsyncClient) -> None:
                while not stop.is_set():
                    outcomes.append(await _register(client))
                    await asyncio.sleep(0.15)

            async def probe(client: httpx.AsyncClient) -> None:
                # A request sent whenever the breaker is open with time left, whatever phase
                # the traffic's clients are in (under a partition they can all be waiting out
                # trials' timeouts just when the breaker is open).
                while not stop.is_set() and not outage_over.is_set():
                    if _breaker_open_now():
                        outcomes.append(await _register(client))
                        await asyncio.sleep(0.1)
                    else:
                        await asyncio.sleep(0.02)

            outage_over = asyncio.Event()
            workers = [asyncio.create_task(traffic(c)) for c in clients[:4]]
            await asyncio.sleep(1.0)
            cut_at = time.monotonic()
            proxy.cut(hang=hang)
            prober = asyncio.create_task(probe(clients[4]))
            # A partition holds the first wave for its timeouts; then the open breaker answers.
            await asyncio.sleep(8.0 if hang else 3.0)
            outage_over.set()
            await prober
            restored_at = time.monotonic()
            proxy.restore()
            # The breaker's reset (1 s) plus a health check (0.3 s) bound the recovery.
            await asyncio.sleep(4.0)
            stop.set()
            await asyncio.gather(*workers)
            for client in clients:
                await client.aclose()

            # Alerts: fired while the database was down (sent directly, signed) ...
            fired = await receiver.wait_for(
                lambda m: any(
                    a["key"] == "database.down" and a["status"] == "firing" for a in m["alerts"]
                )
            )
            assert fired["severity"] == "critical"
            # ... and resolved through the durable queue once it was back.
            await Worker(app.state.db).run_once()
            await receiver.wait_for(
                lambda m: any(
                    a["key"] == "database.down" and a["status"] == "resolved" for a in m["alerts"]
                )
            )
            for delivery in receiver.deliveries:
                assert verify(
                    SECRET, delivery.headers[SIGNATURE_HEADER], delivery.body, int(time.time())
                )

        by_phase = {
            "before": [o for o in outcomes if o.ended < cut_at],
            "outage": [o for o in outcomes if o.started >= cut_at and o.ended < restored_at],
            "after": [o for o in outcomes if o.started >= restored_at + 2.0],
        }
        assert by_phase["before"]
        assert all(o.status == 202 for o in by_phase["before"])
        outage = by_phase["outage"]
        # Every refused request said why, with the stable code; none was a 500, none hung.
        refused = [o for o in outage if o.status != 202]
        assert len(refused) >= 8, [
            (round(o.started - cut_at, 2), round(o.seconds, 2)) for o in outage
        ]
        assert all(o.status == 503 and o.code == "dependency_unavailable" for o in refused), outage
        # No request outlived its timeouts (a hung ping: statement timeout, then a connect).
        worst = settings.db_statement_timeout_seconds + settings.db_connect_timeout_seconds
        assert max(o.seconds for o in outage) < worst + 2.5  # margin for a loaded CI machine
        # Once the breaker is open, refusals are immediate. (Judged on the requests that began
        # while it was open: between its open spells the breaker lets trials through, and under
        # a partition each trial waits out the connect timeout; how many trials fall into the
        # window depends on the machine's load, not on the service.)
        while_open = sorted(o.seconds for o in refused if o.breaker_open)
        assert len(while_open) >= 4, outage
        assert while_open[len(while_open) // 2] < 0.25, while_open
        # Recovery on its own: no restart, no operator.
        assert by_phase["after"]
        assert all(o.status == 202 for o in by_phase["after"])
        assert resilience.dependency("database").state == "closed"

        accepted = sum(o.status == 202 for o in outcomes)
        users = await stored_users(own_database, tmp_path)
        # Every acknowledged sign-up is stored; no refused one left half a write behind
        # (a request cut between its commit and its response may be stored unacknowledged).
        assert accepted <= users <= len(outcomes)
