"""The SDK against a real server on loopback: introspection, the other endpoints, a server
restart survived by retries, and failing fast while the server is down (breaker open).

The tests are synchronous (the blocking client is what most backends embed); the async
client gets its own test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import pytest
import pytest_asyncio

from aayu_accounts.client import (
    AccountsClient,
    ApiError,
    AsyncAccountsClient,
    CircuitOpenError,
    ClientOptions,
    Introspection,
    UnavailableError,
)
from tests.client.server import ServerProcess, ServerStack, server_stack
from tests.identity.accounts.helpers import Account


# One database, client and server per module and backend: starting them is the slow part.
@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServerStack]:
    async with server_stack(backend, tmp_path_factory.mktemp("sdk")) as created:
        yield created


@pytest.fixture(scope="module")
def server(stack: ServerStack) -> ServerProcess:
    return stack.server()


@pytest.fixture
def running(server: ServerProcess) -> ServerProcess:
    """The module's server, started again if a test left it stopped."""
    if server.process is None:
        server.start()
    return server


def signed_in(stack: ServerStack, server: ServerProcess) -> Account:
    return asyncio.run(stack.signed_in_account(server.url))


def test_the_sdk_introspects_a_session_and_calls_every_endpoint(
    stack: ServerStack, running: ServerProcess
) -> None:
    account = signed_in(stack, running)
    with AccountsClient(running.url, stack.key_id, stack.secret) as accounts:
        session = accounts.introspect(account.token)
        assert session.active is True
        assert session.user_id == account.user_id
        assert len(session.org_ids) == 1
        assert session.expires_at is not None
        assert session.expires_at > datetime.now(UTC)
        assert accounts.introspect("not-a-session-token-at-all").active is False

        org_id = session.org_ids[0]
        flags = accounts.evaluate_flags(user_id=account.user_id, org_id=org_id)
        assert {"NEW_AUTH", "BILLING"} <= set(flags)
        entitlement = accounts.check_entitlement(
            org_id=org_id, user_id=account.user_id, feature="notes"
        )
        assert entitlement.allowed is True
        occurred = datetime.now(UTC)
        for expected in (True, False):  # the same event_id counts once
            receipt = accounts.record_usage(
                event_id="sdk-note-1",
                org_id=org_id,
                user_id=account.user_id,
                metric="notes",
                quantity=1,
                occurred_at=occurred,
            )
            assert receipt.recorded is expected


def test_the_async_client_introspects_too(stack: ServerStack, running: ServerProcess) -> None:
    account = signed_in(stack, running)

    async def call() -> str | None:
        async with AsyncAccountsClient(running.url, stack.key_id, stack.secret) as accounts:
            return (await accounts.introspect(account.token)).user_id

    assert asyncio.run(call()) == account.user_id


def test_a_4xx_is_raised_at_once_and_not_retried(
    stack: ServerStack, running: ServerProcess
) -> None:
    wrong = AccountsClient(
        running.url, stack.key_id, "0" * 64, options=ClientOptions(max_attempts=5)
    )
    started = time.monotonic()
    with wrong, pytest.raises(ApiError) as raised:
        wrong.introspect("anything")
    assert raised.value.status == 401
    assert raised.value.code == "signature_invalid"
    assert time.monotonic() - started < 1.0  # no backoff happened
    assert wrong.breaker_state == "closed"  # a 4xx says nothing about the server's health


def test_the_introspection_cache_is_off_by_default_and_short_when_on(
    stack: ServerStack, running: ServerProcess
) -> None:
    account = signed_in(stack, running)
    cached = AccountsClient(
        running.url,
        stack.key_id,
        stack.secret,
        options=ClientOptions(introspection_cache_seconds=30),
    )
    plain = AccountsClient(running.url, stack.key_id, stack.secret)
    brief = AccountsClient(
        running.url,
        stack.key_id,
        stack.secret,
        options=ClientOptions(introspection_cache_seconds=1),
    )
    with cached, plain, brief:
        assert cached.introspect(account.token).active is True
        assert brief.introspect(account.token).active is True
        # Sign out: the uncached client sees it at once; the cached one within its TTL.
        logout = httpx.post(
            running.url + "/api/v1/auth/logout",
            headers={"Authorization": f"Bearer {account.token}"},
        )
        assert logout.status_code == 204
        assert plain.introspect(account.token).active is False
        assert cached.introspect(account.token).active is True
        # A cached answer lasts its few seconds, no longer.
        time.sleep(1.1)
        assert brief.introspect(account.token).active is False
        assert cached.introspect(account.token).active is True


def test_retries_carry_a_call_through_a_server_restart(
    stack: ServerStack, running: ServerProcess
) -> None:
    account = signed_in(stack, running)
    # A budget of about a minute: starting the server takes seconds on a loaded machine.
    options = ClientOptions(
        max_attempts=60, backoff_initial=0.2, backoff_max=1.0, breaker_fail_max=1000
    )
    with AccountsClient(running.url, stack.key_id, stack.secret, options=options) as accounts:
        assert accounts.introspect(account.token).active is True
        running.stop()
        restarter = threading.Timer(0.5, running.start)
        restarter.start()
        try:
            # Sent while the server is down: refused connections, backoff, then success.
            started = time.monotonic()
            assert accounts.introspect(account.token).active is True
            assert time.monotonic() - started > 0.4
        finally:
            restarter.join()


def test_the_breaker_fails_fast_while_the_server_is_down_then_recovers(
    stack: ServerStack, running: ServerProcess
) -> None:
    account = signed_in(stack, running)
    options = ClientOptions(
        max_attempts=2,
        backoff_initial=0.05,
        backoff_max=0.1,
        breaker_fail_max=3,
        breaker_reset_seconds=2.0,
    )
    with AccountsClient(running.url, stack.key_id, stack.secret, options=options) as accounts:
        assert accounts.introspect(account.token).active is True
        running.stop()
        with pytest.raises(UnavailableError):
            accounts.introspect(account.token)  # two failed attempts
        with pytest.raises(UnavailableError):
            accounts.introspect(account.token)  # the third failure opens the breaker
        assert accounts.breaker_state == "open"
        started = time.monotonic()
        with pytest.raises(CircuitOpenError):
            accounts.introspect(account.token)
        assert time.monotonic() - started < 0.05  # no connection attempted at all
        running.start()
        time.sleep(2.1)  # past the reset timeout, one trial call goes through and succeeds
        assert accounts.introspect(account.token).active is True
        assert accounts.breaker_state == "closed"


def test_the_documented_example_runs_against_the_server(
    stack: ServerStack, running: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/api.md's SDK example, run as written (its placeholders filled in): the guide
    cannot drift from the SDK unnoticed."""
    guide = (Path(__file__).parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    section = guide[guide.index("## 4. The Python SDK") :]
    example = section[section.index("```python\n") + len("```python\n") :]
    example = example[: example.index("```")]
    assert "https://accounts.aayuwell.example" in example
    account = signed_in(stack, running)
    monkeypatch.setenv("AAYU_KEY_ID", stack.key_id)
    monkeypatch.setenv("AAYU_SECRET", stack.secret)
    written: list[str] = []

    class NotSignedIn(Exception):
        pass

    namespace: dict[str, object] = {
        "token_from_the_browser": account.token,
        "NotSignedIn": NotSignedIn,
        "write_the_note": lambda: written.append("note"),
        "note": SimpleNamespace(id="doc-example-note-1"),
    }
    code = example.replace("https://accounts.aayuwell.example", running.url)
    exec(compile(code, "docs/api.md", "exec"), namespace)  # noqa: S102 - our own guide
    assert written == ["note"]
    session = namespace["session"]
    assert isinstance(session, Introspection)
    assert session.user_id == account.user_id
    assert "NEW_AUTH" in cast("dict[str, bool]", namespace["flags"])
