"""Azure Key Vault secrets through ``azure-keyvault-secrets``.

Authentication is ``DefaultAzureCredential`` (managed identity, workload identity, environment,
Azure CLI...) unless a credential is given. The SDK's own retries are turned off: the
:class:`~.resilience.ResilientSecretStore` wrapper owns retries, backoff and the breaker, so
the policy is the same for every provider. The client is synchronous (requests); calls run
in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from aayu_accounts.crypto.secret_store.base import (
    Secret,
    SecretNotFound,
    SecretStore,
    SecretStoreError,
    SecretStoreUnavailable,
    SecretVersion,
    check_name,
)

T = TypeVar("T")


class AzureKeyVaultSecretStore(SecretStore):
    provider = "azure"
    remote = True

    def __init__(
        self,
        vault_url: str,
        *,
        credential: TokenCredential | None = None,
        timeout: float = 5.0,
        **client_options: Any,
    ) -> None:
        if credential is None:
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - heavy import

            credential = DefaultAzureCredential()
        self._client = SecretClient(
            vault_url,
            credential,
            retry_total=0,
            connection_timeout=timeout,
            read_timeout=timeout,
            **client_options,
        )

    async def _run(self, name: str, version: str | None, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except ResourceNotFoundError:
            raise SecretNotFound(name, version) from None
        except ClientAuthenticationError as exc:
            raise SecretStoreError(
                f"azure refused the credential ({exc.status_code})",
                status_code=exc.status_code or 401,
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise SecretStoreUnavailable(f"azure: {type(exc).__name__}") from None
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status >= 500 or status == 0:
                raise SecretStoreUnavailable(f"azure answered {status}") from None
            raise SecretStoreError(
                f"azure refused the request ({status})", status_code=status
            ) from None

    async def get(self, name: str, version: str | None = None) -> Secret:
        check_name(name)
        found = await self._run(name, version, lambda: self._client.get_secret(name, version))
        if found.value is None or found.properties.version is None:
            raise SecretNotFound(name, version)
        return Secret(name, found.properties.version, found.value)

    async def set(self, name: str, value: str) -> Secret:
        check_name(name)
        stored = await self._run(name, None, lambda: self._client.set_secret(name, value))
        assert stored.properties.version is not None
        return Secret(name, stored.properties.version, value)

    async def list_versions(self, name: str) -> list[SecretVersion]:
        check_name(name)
        items = await self._run(
            name, None, lambda: list(self._client.list_properties_of_secret_versions(name))
        )
        if not items:
            raise SecretNotFound(name)
        epoch = datetime.min.replace(tzinfo=UTC)
        ordered = sorted(items, key=lambda p: p.created_on or epoch)
        return [
            SecretVersion(name, p.version or "", p.created_on, enabled=bool(p.enabled))
            for p in ordered
        ]

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)
