"""The file and env providers, and which providers each environment accepts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aayu_accounts.config import Settings
from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.secret_store import SecretNotFound, SecretRefused
from aayu_accounts.crypto.secret_store.cache import CachedSecretStore
from aayu_accounts.crypto.secret_store.env import EnvSecretStore
from aayu_accounts.crypto.secret_store.factory import (
    SecretStoreMisconfigured,
    build_secret_store,
)
from aayu_accounts.crypto.secret_store.file import FileSecretStore
from aayu_accounts.crypto.secret_store.resilience import ResilientSecretStore
from aayu_accounts.crypto.secret_store.vault import VaultSecretStore
from aayu_accounts.kit import resilience


async def test_development_generates_missing_secrets_privately(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    store = FileSecretStore(directory, generate_missing=True)
    first = await store.get("master-key")
    assert len(primitives.decode_key(first.value)) == 32
    assert (await store.get("master-key")).value == first.value
    assert stat.S_IMODE((directory / "master-key").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    second = await store.set("master-key", "next-value")
    assert second.version == "2"
    assert (directory / "master-key.v2").exists()
    assert (await store.get("master-key")).value == "next-value"
    assert (await store.get("master-key", "1")).value == first.value
    assert [v.version for v in await store.list_versions("master-key")] == ["1", "2"]


async def test_production_file_store_neither_generates_nor_accepts_generated(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "secrets"
    with pytest.raises(SecretNotFound):
        await FileSecretStore(directory, generate_missing=False).get("master-key")
    await FileSecretStore(directory, generate_missing=True).get("master-key")
    with pytest.raises(SecretRefused, match="generated"):
        await FileSecretStore(directory, generate_missing=False).get("master-key")
    # A secret an operator mounted (not generated) is accepted.
    (directory / "stripe-key").write_text("sk_test_mounted\n")
    mounted = await FileSecretStore(directory, generate_missing=False).get("stripe-key")
    assert mounted.value == "sk_test_mounted"


async def test_env_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAYU_SECRET_MASTER_KEY", "one")
    monkeypatch.setenv("AAYU_SECRET_MASTER_KEY_V2", "two")
    store = EnvSecretStore()
    assert (await store.get("master-key")).value == "two"
    assert (await store.get("master-key", "1")).value == "one"
    assert [v.version for v in await store.list_versions("master-key")] == ["1", "2"]
    with pytest.raises(SecretNotFound):
        await store.get("missing-secret")
    monkeypatch.delenv("AAYU_SECRET_MASTER_KEY_V3", raising=False)
    created = await store.set("master-key", "three")
    monkeypatch.delenv("AAYU_SECRET_MASTER_KEY_V3")
    assert created.version == "3"


def _production(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "production",
        "database_url": "postgresql+asyncpg://db.example/aayu",
        "var_dir": tmp_path / "var",
        "secrets_dir": tmp_path / "var" / "secrets",
    }
    values.update(overrides)
    return Settings.model_validate(values)


def test_production_refuses_env_and_generated_secrets(tmp_path: Path) -> None:
    env = _production(tmp_path, secrets_provider="env")
    assert any("env is for development only" in p for p in env.production_problems())
    with pytest.raises(SecretStoreMisconfigured):
        build_secret_store(env)
    generated = _production(tmp_path, secrets_provider="file")
    assert any("generated development secrets" in p for p in generated.production_problems())
    mounted = _production(tmp_path, secrets_provider="file", secrets_dir=Path("/run/secrets"))
    assert not any("SECRETS" in p for p in mounted.production_problems())
    store = build_secret_store(mounted)
    assert isinstance(store, FileSecretStore)
    assert not store.generate_missing
    plain_vault = _production(tmp_path, secrets_provider="vault", vault_url="http://vault:8200")
    assert any("AAYU_VAULT_URL" in p for p in plain_vault.production_problems())


def test_remote_providers_get_the_cache_and_resilience(tmp_path: Path) -> None:
    settings = _production(
        tmp_path, secrets_provider="vault", vault_url="https://vault.example", vault_token="t"
    )
    store = build_secret_store(settings)
    assert isinstance(store, CachedSecretStore)
    assert store.remote
    assert store.ttl.total_seconds() == 300
    inner = getattr(store.inner, "inner", None)
    assert isinstance(inner, VaultSecretStore)


def test_remote_store_settings_reach_the_cache_and_the_resilience_policy(tmp_path: Path) -> None:
    settings = _production(
        tmp_path,
        secrets_provider="vault",
        vault_url="https://vault.example",
        vault_token="t",
        secret_cache_ttl_seconds=42,
        secret_stale_seconds=600,
        secret_store_timeout_seconds=1.5,
        secret_store_retries=1,
        secret_store_breaker_failures=3,
        secret_store_breaker_reset_seconds=7,
    )
    resilience.configure(settings)
    store = build_secret_store(settings)
    assert isinstance(store, CachedSecretStore)
    assert store.ttl.total_seconds() == 42
    assert store.stale_for.total_seconds() == 600
    wrapped = store.inner
    assert isinstance(wrapped, ResilientSecretStore)
    # The process-wide secret_store dependency (one breaker shared by every caller).
    assert wrapped.guard is resilience.dependency(resilience.SECRET_STORE)
    policy = wrapped.guard.policy
    assert (policy.timeout_seconds, policy.attempts) == (1.5, 2)
    assert (policy.breaker_fail_max, policy.breaker_reset_seconds) == (3, 7)
