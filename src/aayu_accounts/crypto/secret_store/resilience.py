"""Timeout, retries and a circuit breaker around a remote secret store (DESIGN rule 7).

* every call is bounded by ``timeout`` (the client libraries also get it as their HTTP
  timeout; this bound also covers DNS and TLS set-up);
* :class:`SecretStoreUnavailable` (5xx, connection errors, timeouts) is retried with
  exponential backoff and full jitter (tenacity); anything else — a missing secret, a refused
  token, any 4xx — is not, because asking again gets the same answer;
* a ``pybreaker`` breaker counts calls that failed after their retries; once open, calls fail
  at once until ``reset_seconds`` have passed, so a dead vault does not hold every request
  for timeout times retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pybreaker
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from aayu_accounts.crypto.secret_store.base import (
    Secret,
    SecretStore,
    SecretStoreUnavailable,
    SecretVersion,
)
from aayu_accounts.observability.metrics import (
    BREAKER_STATE_VALUES,
    CIRCUIT_BREAKER_STATE,
    DEPENDENCY_CALLS,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")


def _not_an_outage(exc: BaseException) -> bool:
    # Excluded from the breaker's count: only outages should open it.
    return not isinstance(exc, SecretStoreUnavailable)


class ResilientSecretStore(SecretStore):
    remote = True

    def __init__(
        self,
        inner: SecretStore,
        *,
        timeout: float,
        retries: int,
        breaker_failures: int,
        breaker_reset_seconds: float,
        backoff_initial: float = 0.2,
        backoff_max: float = 2.0,
    ) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.timeout = timeout
        self.retries = retries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=breaker_failures,
            reset_timeout=breaker_reset_seconds,
            exclude=[_not_an_outage],
            name=f"secret_store_{inner.provider}",
        )
        self._dependency = f"secret_store_{inner.provider}"

    async def _attempts(self, call: Callable[[], Awaitable[T]]) -> T:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max),
            retry=retry_if_exception_type(SecretStoreUnavailable),
            reraise=True,
        ):
            with attempt:
                try:
                    return await asyncio.wait_for(call(), timeout=self.timeout)
                except TimeoutError:
                    raise SecretStoreUnavailable(
                        f"{self.provider} did not answer within {self.timeout} s"
                    ) from None
        raise AssertionError("unreachable")  # tenacity either returns or re-raises

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        outcome = "error"
        try:
            with self.breaker.calling():
                result = await self._attempts(call)
        except pybreaker.CircuitBreakerError:
            outcome = "rejected"
            raise SecretStoreUnavailable(f"{self.provider}: circuit open") from None
        except SecretStoreUnavailable:
            outcome = "error"
            raise
        except Exception:
            outcome = "ok"  # the provider answered (e.g. not found); not an outage
            raise
        else:
            outcome = "ok"
            return result
        finally:
            DEPENDENCY_CALLS.labels(self._dependency, outcome).inc()
            state = str(self.breaker.current_state)
            CIRCUIT_BREAKER_STATE.labels(self._dependency).set(
                BREAKER_STATE_VALUES.get(state.replace("_", "-"), 0)
            )

    async def get(self, name: str, version: str | None = None) -> Secret:
        return await self._call(lambda: self.inner.get(name, version))

    async def set(self, name: str, value: str) -> Secret:
        return await self._call(lambda: self.inner.set(name, value))

    async def list_versions(self, name: str) -> list[SecretVersion]:
        return await self._call(lambda: self.inner.list_versions(name))

    async def close(self) -> None:
        await self.inner.close()
