"""The secret store the settings ask for, with its cache (and resilience for remote ones)."""

from __future__ import annotations

from datetime import timedelta

from aayu_accounts.config import Environment, SecretsProvider, Settings
from aayu_accounts.crypto.secret_store.base import SecretStore
from aayu_accounts.crypto.secret_store.cache import CachedSecretStore
from aayu_accounts.crypto.secret_store.env import EnvSecretStore
from aayu_accounts.crypto.secret_store.file import FileSecretStore
from aayu_accounts.crypto.secret_store.resilience import ResilientSecretStore


class SecretStoreMisconfigured(Exception):
    """The chosen provider is not allowed here, or lacks a setting it needs."""


def build_secret_store(settings: Settings) -> SecretStore:
    provider = settings.secrets_provider
    if provider is SecretsProvider.ENV:
        if settings.env is Environment.PRODUCTION:
            raise SecretStoreMisconfigured("AAYU_SECRETS_PROVIDER=env is for development only")
        return EnvSecretStore()
    if provider is SecretsProvider.FILE:
        # Only development and tests may invent secrets; production must be given them.
        generate = settings.env is not Environment.PRODUCTION
        return FileSecretStore(settings.secrets_dir, generate_missing=generate)
    return remote_store(settings, _remote_provider(settings))


def _remote_provider(settings: Settings) -> SecretStore:
    if settings.secrets_provider is SecretsProvider.VAULT:
        from aayu_accounts.crypto.secret_store.vault import VaultSecretStore  # noqa: PLC0415

        if not settings.vault_url:
            raise SecretStoreMisconfigured("AAYU_VAULT_URL is unset")
        return VaultSecretStore(
            settings.vault_url,
            settings.vault_token,
            mount=settings.vault_mount,
            prefix=settings.vault_path_prefix,
            namespace=settings.vault_namespace,
            timeout=settings.secret_store_timeout_seconds,
        )
    from aayu_accounts.crypto.secret_store.azure import AzureKeyVaultSecretStore  # noqa: PLC0415

    if not settings.azure_key_vault_url:
        raise SecretStoreMisconfigured("AAYU_AZURE_KEY_VAULT_URL is unset")
    return AzureKeyVaultSecretStore(
        settings.azure_key_vault_url, timeout=settings.secret_store_timeout_seconds
    )


def remote_store(settings: Settings, provider: SecretStore) -> SecretStore:
    """``provider`` behind the resilience wrapper and the cache, as the settings say."""
    # Timeout, retries and breaker come from kit.resilience's ``secret_store`` policy, which
    # kit.resilience.configure() tunes from the same AAYU_SECRET_STORE_* settings.
    resilient = ResilientSecretStore(provider)
    return CachedSecretStore(
        resilient,
        ttl=timedelta(seconds=settings.secret_cache_ttl_seconds),
        stale_for=timedelta(seconds=settings.secret_stale_seconds),
    )
