"""Vault (KV v2) and Azure Key Vault providers over real HTTP(S) against local stand-ins,
behind the resilience wrapper (timeouts, retries, breaker) and the stale-serving cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import azure.identity
import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from aayu_accounts.config import Settings
from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.keyring import KeyPurpose
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.crypto.secret_store import (
    SecretNotFound,
    SecretStore,
    SecretStoreError,
    SecretStoreUnavailable,
)
from aayu_accounts.crypto.secret_store.azure import AzureKeyVaultSecretStore
from aayu_accounts.crypto.secret_store.cache import STALE_ALERT, CachedSecretStore
from aayu_accounts.crypto.secret_store.resilience import ResilientSecretStore
from aayu_accounts.crypto.secret_store.vault import VaultSecretStore
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.kit.resilience import SECRET_STORE, Dependency, Policy
from aayu_accounts.observability.metrics import ALERTS
from tests.fixtures.secret_servers import (
    AzureStandIn,
    StandIn,
    StaticTokenCredential,
    VaultStandIn,
)


def vault_store(server: VaultStandIn, token: str | None = None) -> VaultSecretStore:
    return VaultSecretStore(server.url, token or server.token, timeout=2)


def azure_store(server: AzureStandIn, token: str | None = None) -> AzureKeyVaultSecretStore:
    return AzureKeyVaultSecretStore(
        server.url,
        credential=StaticTokenCredential(token or server.token),
        timeout=2,
        verify_challenge_resource=False,  # the stand-in is not on *.vault.azure.net
        connection_verify=str(server.cert_path),
    )


def resilient(
    inner: SecretStore, *, retries: int = 2, failures: int = 2, timeout: float = 1.0
) -> ResilientSecretStore:
    """The provider behind its own breaker (not the process-wide one), with short waits."""
    policy = Policy(SECRET_STORE, timeout, retries + 1, 0.01, 0.02, failures, 0.5)
    return ResilientSecretStore(inner, guard=Dependency(policy))


@pytest_asyncio.fixture(loop_scope="session", params=["vault", "azure"])
async def remote(
    request: pytest.FixtureRequest, vault_server: VaultStandIn, azure_server: AzureStandIn
) -> AsyncIterator[tuple[SecretStore, StandIn]]:
    if request.param == "vault":
        store: SecretStore = vault_store(vault_server)
        server: StandIn = vault_server
    else:
        store = azure_store(azure_server)
        server = azure_server
    try:
        yield store, server
    finally:
        await store.close()


async def test_get_set_and_versions(remote: tuple[SecretStore, StandIn]) -> None:
    store, _ = remote
    with pytest.raises(SecretNotFound):
        await store.get("master-key")
    with pytest.raises(SecretNotFound):
        await store.list_versions("master-key")
    first = await store.set("master-key", "value-one")
    second = await store.set("master-key", "value-two")
    assert first.version != second.version
    assert (await store.get("master-key")).value == "value-two"
    assert (await store.get("master-key", first.version)).value == "value-one"
    versions = await store.list_versions("master-key")
    assert [v.version for v in versions] == [first.version, second.version]
    assert all(v.enabled for v in versions)
    assert "value" not in repr(await store.get("master-key"))


async def test_refused_credentials_are_not_retried(
    vault_server: VaultStandIn, azure_server: AzureStandIn
) -> None:
    bad_vault = resilient(vault_store(vault_server, token="wrong"))
    with pytest.raises(SecretStoreError) as caught:
        await bad_vault.get("master-key")
    assert not isinstance(caught.value, SecretStoreUnavailable)
    assert vault_server.requests == 1
    bad_azure = resilient(azure_store(azure_server, token="wrong"))
    with pytest.raises(SecretStoreError) as caught:
        await bad_azure.get("master-key")
    assert not isinstance(caught.value, SecretStoreUnavailable)
    # The SDK's challenge round trip: one unauthenticated request, one with the (bad) token.
    assert azure_server.requests == 2
    await bad_vault.close()
    await bad_azure.close()


async def test_outage_is_retried_then_the_breaker_opens(
    remote: tuple[SecretStore, StandIn],
) -> None:
    store, server = remote
    await store.set("master-key", "value")
    wrapped = resilient(store, retries=2, failures=4)
    server.outage = True
    before = server.requests
    with pytest.raises(SecretStoreUnavailable):
        await wrapped.get("master-key")
    assert server.requests - before == 3  # one attempt and two retries
    with pytest.raises(SecretStoreUnavailable):
        await wrapped.get("master-key")
    # Four failed attempts opened the breaker: the next call fails without any request.
    before = server.requests
    with pytest.raises(SecretStoreUnavailable, match="circuit open"):
        await wrapped.get("master-key")
    assert server.requests == before
    # After the reset timeout, one trial call goes through and closes it again.
    server.outage = False
    await asyncio.sleep(0.6)
    assert (await wrapped.get("master-key")).value == "value"


async def test_not_found_is_not_retried(remote: tuple[SecretStore, StandIn]) -> None:
    store, server = remote
    wrapped = resilient(store)
    before = server.requests
    with pytest.raises(SecretNotFound):
        await wrapped.get("no-such-secret")
    assert server.requests - before <= 2  # Azure's challenge round trip counts as two


async def test_slow_provider_times_out(vault_server: VaultStandIn) -> None:
    store = vault_store(vault_server)
    await store.set("master-key", "value")
    wrapped = resilient(store, retries=1, failures=5, timeout=0.2)
    vault_server.delay = 0.5
    with pytest.raises(SecretStoreUnavailable, match="did not answer"):
        await wrapped.get("master-key")
    vault_server.delay = 0
    await store.close()


async def test_cache_serves_stale_values_during_an_outage_with_an_alert(
    remote: tuple[SecretStore, StandIn], frozen_clock: FrozenClock
) -> None:
    store, server = remote
    await store.set("master-key", "cached-value-123")
    cache = CachedSecretStore(
        resilient(store, retries=0, failures=100),
        ttl=timedelta(minutes=5),
        stale_for=timedelta(minutes=30),
    )
    assert (await cache.get("master-key")).value == "cached-value-123"
    before = server.requests
    frozen_clock.advance(timedelta(minutes=4))
    assert (await cache.get("master-key")).value == "cached-value-123"
    assert server.requests == before  # fresh: no request
    server.outage = True
    frozen_clock.advance(timedelta(minutes=10))
    alerts_before = ALERTS.labels("high", STALE_ALERT)._value.get()
    with capture_logs() as logs:
        assert (await cache.get("master-key")).value == "cached-value-123"
    assert ALERTS.labels("high", STALE_ALERT)._value.get() == alerts_before + 1
    stale_events = [e for e in logs if e["event"] == "secret_store.serving_stale"]
    assert stale_events
    assert stale_events[0]["log_level"] == "critical"
    assert "cached-value-123" not in repr(logs)
    frozen_clock.advance(timedelta(minutes=30))  # past ttl + stale period
    with pytest.raises(SecretStoreUnavailable):
        await cache.get("master-key")
    server.outage = False
    assert (await cache.get("master-key")).value == "cached-value-123"


async def test_keyring_runs_on_a_remote_store(
    remote: tuple[SecretStore, StandIn], settings: Settings, db: Database
) -> None:
    store, _ = remote
    await store.set("master-key", primitives.encode_key(primitives.random_key()))
    runtime = await start_keyring(settings, db, store=store, refresh=False)
    try:
        sealed = runtime.keyring.encrypt(KeyPurpose.DATA, b"remote", b"aad")
        await runtime.refresh(db)
        assert runtime.keyring.decrypt(KeyPurpose.DATA, sealed, b"aad") == b"remote"
    finally:
        await runtime.stop()


async def test_azure_authenticates_with_default_azure_credential(
    azure_server: AzureStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a credential the store asks ``DefaultAzureCredential`` (here a stand-in for
    the identity endpoint it would reach) and sends its token over real HTTPS."""
    made: list[StaticTokenCredential] = []

    class Recording(StaticTokenCredential):
        def __init__(self) -> None:
            super().__init__(azure_server.token)
            made.append(self)

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Recording)
    store = AzureKeyVaultSecretStore(
        azure_server.url,
        timeout=2,
        verify_challenge_resource=False,
        connection_verify=str(azure_server.cert_path),
    )
    try:
        await store.set("master-key", "from-default-credential")
        assert (await store.get("master-key")).value == "from-default-credential"
    finally:
        await store.close()
    assert len(made) == 1
    assert made[0].requests >= 1
