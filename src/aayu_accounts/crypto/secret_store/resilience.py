"""A remote secret store called through the ``secret_store`` dependency of
:mod:`aayu_accounts.kit.resilience` (DESIGN rule 7: resilience declared once per dependency).

That policy gives every call a timeout, retries with exponential backoff and full jitter
(tenacity) and a ``pybreaker`` circuit breaker. Provider errors carry an HTTP-like
``status_code``: a 4xx (a missing secret, a refused token) is an answer, neither retried nor
counted by the breaker; a 5xx, a connection error or a timeout is an outage. Outages reach the
caller as :class:`SecretStoreUnavailable`, which the cache in front answers with its stale
copy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aayu_accounts.crypto.secret_store.base import (
    Secret,
    SecretStore,
    SecretStoreUnavailable,
    SecretVersion,
)
from aayu_accounts.kit.resilience import SECRET_STORE, BreakerOpen, Dependency, dependency

T = TypeVar("T")


class ResilientSecretStore(SecretStore):
    remote = True

    def __init__(self, inner: SecretStore, *, guard: Dependency | None = None) -> None:
        self.inner = inner
        self.provider = inner.provider
        # One process-wide breaker for the secret store unless a caller (a test) brings its own.
        self.guard = guard or dependency(SECRET_STORE)

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self.guard.call(call)
        except BreakerOpen:
            raise SecretStoreUnavailable(f"{self.provider}: circuit open") from None
        except TimeoutError:
            raise SecretStoreUnavailable(
                f"{self.provider} did not answer within {self.guard.policy.timeout_seconds} s"
            ) from None

    async def get(self, name: str, version: str | None = None) -> Secret:
        return await self._call(lambda: self.inner.get(name, version))

    async def set(self, name: str, value: str) -> Secret:
        return await self._call(lambda: self.inner.set(name, value))

    async def list_versions(self, name: str) -> list[SecretVersion]:
        return await self._call(lambda: self.inner.list_versions(name))

    async def close(self) -> None:
        await self.inner.close()
