"""HashiCorp Vault, KV secrets engine version 2, through ``hvac``.

Each secret is ``<mount>/<prefix><name>`` with the value under the key ``value``; Vault keeps
the versions. ``hvac`` is synchronous (requests), so calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Any

import hvac
import hvac.exceptions
import requests

from aayu_accounts.crypto.secret_store.base import (
    Secret,
    SecretNotFound,
    SecretStore,
    SecretStoreError,
    SecretStoreUnavailable,
    SecretVersion,
    check_name,
)

_OUTAGES = (
    hvac.exceptions.InternalServerError,
    hvac.exceptions.VaultDown,
    hvac.exceptions.BadGateway,
    hvac.exceptions.VaultNotInitialized,
    hvac.exceptions.UnexpectedError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


class VaultSecretStore(SecretStore):
    provider = "vault"
    remote = True

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        mount: str = "secret",
        prefix: str = "aayu-accounts/",
        namespace: str | None = None,
        timeout: float = 5.0,
        verify: bool | str = True,
    ) -> None:
        self.mount = mount
        self.prefix = prefix
        session = requests.Session()
        self._client = hvac.Client(
            url=url,
            token=token,
            namespace=namespace,
            # hvac takes whole seconds; the wrapper's own bound is the precise one.
            timeout=max(1, math.ceil(timeout)),
            verify=verify,
            session=session,
        )

    def _path(self, name: str) -> str:
        return self.prefix + check_name(name)

    async def _run(self, name: str, call: Any) -> Any:
        try:
            return await asyncio.to_thread(call)
        except hvac.exceptions.InvalidPath:
            raise SecretNotFound(name) from None
        except _OUTAGES as exc:
            raise SecretStoreUnavailable(f"vault: {type(exc).__name__}") from None
        except hvac.exceptions.VaultError as exc:  # 4xx: permission, bad request
            raise SecretStoreError(
                f"vault refused the request: {type(exc).__name__}", status_code=403
            ) from None

    async def get(self, name: str, version: str | None = None) -> Secret:
        path = self._path(name)
        response = await self._run(
            name,
            lambda: self._client.secrets.kv.v2.read_secret_version(
                path=path,
                version=int(version) if version is not None else None,
                mount_point=self.mount,
                raise_on_deleted_version=True,
            ),
        )
        data = response["data"]
        try:
            value = data["data"]["value"]
        except (KeyError, TypeError):
            raise SecretNotFound(name, version) from None
        return Secret(name, str(data["metadata"]["version"]), str(value))

    async def set(self, name: str, value: str) -> Secret:
        path = self._path(name)
        response = await self._run(
            name,
            lambda: self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret={"value": value}, mount_point=self.mount
            ),
        )
        return Secret(name, str(response["data"]["version"]), value)

    async def list_versions(self, name: str) -> list[SecretVersion]:
        path = self._path(name)
        response = await self._run(
            name,
            lambda: self._client.secrets.kv.v2.read_secret_metadata(
                path=path, mount_point=self.mount
            ),
        )
        versions: dict[str, Any] = response["data"].get("versions") or {}
        if not versions:
            raise SecretNotFound(name)
        return [
            SecretVersion(
                name,
                number,
                _parse_time(meta.get("created_time")),
                enabled=not meta.get("destroyed") and not meta.get("deletion_time"),
            )
            for number, meta in sorted(versions.items(), key=lambda item: int(item[0]))
        ]

    async def close(self) -> None:
        adapter = self._client.adapter
        await asyncio.to_thread(adapter.close)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    # Vault gives RFC 3339 with nanoseconds; Python takes up to microseconds.
    head, _, rest = value.partition(".")
    if rest:
        fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
        zone = rest[len("".join(ch for ch in rest if ch.isdigit())) :]
        value = f"{head}.{fraction}{zone}"
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
