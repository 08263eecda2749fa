"""The secret store the settings ask for, with its cache (and resilience for remote ones)."""

from __future__ import annotations

from aayu_accounts.config import Environment, SecretsProvider, Settings
from aayu_accounts.crypto.secret_store.base import SecretStore
from aayu_accounts.crypto.secret_store.env import EnvSecretStore
from aayu_accounts.crypto.secret_store.file import FileSecretStore


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
    raise SecretStoreMisconfigured(f"secrets provider {provider.value} is not available yet")
