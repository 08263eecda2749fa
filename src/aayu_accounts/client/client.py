"""``AccountsClient`` (blocking) and ``AsyncAccountsClient``: the four service endpoints.

Example::

    from aayu_accounts.client import AccountsClient

    with AccountsClient("https://accounts.aayuwell.example", KEY_ID, SECRET) as accounts:
        session = accounts.introspect(token_from_the_browser)
        if session.active:
            ...
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any, Self

import httpx
import pybreaker
from tenacity import AsyncRetrying, Retrying

from aayu_accounts.client.core import ClientCore, ClientOptions
from aayu_accounts.client.models import Entitlement, Introspection, UsageReceipt

INTROSPECT = "/api/v1/service/sessions/introspect"
ENTITLEMENTS = "/api/v1/service/entitlements/check"
USAGE = "/api/v1/service/usage"
FLAGS = "/api/v1/service/flags/evaluate"


def _usage_payload(
    *, event_id: str, org_id: str, user_id: str, metric: str, quantity: int, occurred_at: datetime
) -> dict[str, Any]:
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    return {
        "event_id": event_id,
        "org_id": org_id,
        "user_id": user_id,
        "metric": metric,
        "quantity": quantity,
        "occurred_at": occurred_at.isoformat(),
    }


def _flags_payload(user_id: str | None, org_id: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if user_id is not None:
        payload["user_id"] = user_id
    if org_id is not None:
        payload["org_id"] = org_id
    return payload


class AccountsClient:
    """Blocking client. Every call is idempotent on the service side (reads, and usage by
    ``event_id``), so each is retried on transport failures and 5xx answers."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        options: ClientOptions | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._core = ClientCore(base_url, key_id, secret, options or ClientOptions())
        self._http = httpx.Client(timeout=self._core.timeout, transport=transport)

    @property
    def breaker_state(self) -> str:
        return str(self._core.breaker.current_state)

    def _attempt(self, path: str, body: bytes) -> dict[str, Any]:
        core = self._core
        try:
            with core.breaker.calling():
                try:
                    response = self._http.post(
                        core.url(path), content=body, headers=core.headers(path, body)
                    )
                except httpx.TransportError as exc:
                    raise core.transport_failure(exc) from exc
                return core.result(response)
        except pybreaker.CircuitBreakerError as exc:
            raise core.open_circuit(exc) from exc

    def _call(self, path: str, payload: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        body = self._core.encode(payload)
        for attempt in Retrying(**self._core.retry_kwargs(idempotent)):
            with attempt:
                return self._attempt(path, body)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    def introspect(self, token: str) -> Introspection:
        """Whether ``token`` is a live session and whose; cached when the options say so."""
        cached = self._core.cache.get(token)
        if cached is not None:
            return cached
        answer = Introspection.from_json(self._call(INTROSPECT, {"token": token}, idempotent=True))
        self._core.cache.put(token, answer)
        return answer

    def check_entitlement(self, *, org_id: str, user_id: str, feature: str) -> Entitlement:
        data = self._call(
            ENTITLEMENTS,
            {"org_id": org_id, "user_id": user_id, "feature": feature},
            idempotent=True,
        )
        return Entitlement.from_json(data)

    def record_usage(
        self,
        *,
        event_id: str,
        org_id: str,
        user_id: str,
        metric: str,
        quantity: int,
        occurred_at: datetime,
    ) -> UsageReceipt:
        """Idempotent by ``event_id``: safe to retry, counted once."""
        payload = _usage_payload(
            event_id=event_id,
            org_id=org_id,
            user_id=user_id,
            metric=metric,
            quantity=quantity,
            occurred_at=occurred_at,
        )
        return UsageReceipt.from_json(self._call(USAGE, payload, idempotent=True))

    def evaluate_flags(
        self, *, user_id: str | None = None, org_id: str | None = None
    ) -> dict[str, bool]:
        data = self._call(FLAGS, _flags_payload(user_id, org_id), idempotent=True)
        return {str(k): bool(v) for k, v in dict(data.get("flags", {})).items()}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncAccountsClient:
    """The same client for asyncio code (``await accounts.introspect(token)``)."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        options: ClientOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._core = ClientCore(base_url, key_id, secret, options or ClientOptions())
        self._http = httpx.AsyncClient(timeout=self._core.timeout, transport=transport)

    @property
    def breaker_state(self) -> str:
        return str(self._core.breaker.current_state)

    async def _attempt(self, path: str, body: bytes) -> dict[str, Any]:
        core = self._core
        try:
            # pybreaker's context manager releases its lock before the body runs, so the
            # await below does not hold a thread lock.
            with core.breaker.calling():
                try:
                    response = await self._http.post(
                        core.url(path), content=body, headers=core.headers(path, body)
                    )
                except httpx.TransportError as exc:
                    raise core.transport_failure(exc) from exc
                return core.result(response)
        except pybreaker.CircuitBreakerError as exc:
            raise core.open_circuit(exc) from exc

    async def _call(
        self, path: str, payload: dict[str, Any], *, idempotent: bool
    ) -> dict[str, Any]:
        body = self._core.encode(payload)
        async for attempt in AsyncRetrying(**self._core.retry_kwargs(idempotent)):
            with attempt:
                return await self._attempt(path, body)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    async def introspect(self, token: str) -> Introspection:
        cached = self._core.cache.get(token)
        if cached is not None:
            return cached
        data = await self._call(INTROSPECT, {"token": token}, idempotent=True)
        answer = Introspection.from_json(data)
        self._core.cache.put(token, answer)
        return answer

    async def check_entitlement(self, *, org_id: str, user_id: str, feature: str) -> Entitlement:
        data = await self._call(
            ENTITLEMENTS,
            {"org_id": org_id, "user_id": user_id, "feature": feature},
            idempotent=True,
        )
        return Entitlement.from_json(data)

    async def record_usage(
        self,
        *,
        event_id: str,
        org_id: str,
        user_id: str,
        metric: str,
        quantity: int,
        occurred_at: datetime,
    ) -> UsageReceipt:
        payload = _usage_payload(
            event_id=event_id,
            org_id=org_id,
            user_id=user_id,
            metric=metric,
            quantity=quantity,
            occurred_at=occurred_at,
        )
        return UsageReceipt.from_json(await self._call(USAGE, payload, idempotent=True))

    async def evaluate_flags(
        self, *, user_id: str | None = None, org_id: str | None = None
    ) -> dict[str, bool]:
        data = await self._call(FLAGS, _flags_payload(user_id, org_id), idempotent=True)
        return {str(k): bool(v) for k, v in dict(data.get("flags", {})).items()}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
