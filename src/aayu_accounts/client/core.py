"""What the sync and async clients share: options, signing, the breaker, retries, the cache.

Resilience, declared once (DESIGN.md rule 7):

* every attempt is signed afresh (new nonce and timestamp), or the service would refuse the
  retry as a replay;
* retries (tenacity: exponential backoff with random jitter) only for idempotent calls, and only
  for transport failures and 5xx answers, never for a 4xx (the request itself is wrong, or
  the caller is being rate limited);
* a circuit breaker (pybreaker) counts transport failures and 5xx answers; once open, calls
  fail at once with :class:`CircuitOpenError` until its reset timeout, instead of piling up
  behind timeouts. A 4xx says nothing about the service's health and is not counted.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pybreaker
from tenacity import retry_if_exception, stop_after_attempt, wait_exponential_jitter

from aayu_accounts.client.errors import (
    ApiError,
    CircuitOpenError,
    RateLimitedError,
    UnavailableError,
)
from aayu_accounts.client.models import Introspection
from aayu_accounts.client.signing import secret_key, sign_headers
from aayu_accounts.kit import clock


class ServerError(ApiError, UnavailableError):
    """A 5xx answer: retried (idempotent calls) and counted by the breaker."""


class TransportFailure(UnavailableError):
    """The request did not get an answer (refused connection, timeout, broken stream)."""


@dataclass(frozen=True)
class ClientOptions:
    """Timeouts in seconds. ``max_attempts`` counts the first try."""

    timeout: float = 5.0
    connect_timeout: float = 2.0
    max_attempts: int = 3
    backoff_initial: float = 0.1
    backoff_max: float = 2.0
    breaker_fail_max: int = 5
    breaker_reset_seconds: float = 30.0
    # Introspection answers cached this long (0: off, the default). A revoked session can
    # look active for up to this long, so keep it to a few seconds.
    introspection_cache_seconds: float = 0.0
    introspection_cache_size: int = 10_000


def _counts_against_breaker(exc: BaseException) -> bool:
    """pybreaker exclusion: True means "not a failure of the service"."""
    return isinstance(exc, ApiError) and not isinstance(exc, ServerError)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, UnavailableError) and not isinstance(exc, CircuitOpenError)


class IntrospectionCache:
    def __init__(self, ttl_seconds: float, max_entries: int) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Introspection]] = OrderedDict()

    @staticmethod
    def key(token: str) -> str:
        # Never keep the token itself in memory longer than the call.
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def get(self, token: str) -> Introspection | None:
        if self.ttl_seconds <= 0:
            return None
        key = self.key(token)
        found = self._entries.get(key)
        if found is None:
            return None
        until, answer = found
        if clock.monotonic() >= until or (
            answer.expires_at is not None and answer.expires_at <= clock.now()
        ):
            del self._entries[key]
            return None
        return answer

    def put(self, token: str, answer: Introspection) -> None:
        if self.ttl_seconds <= 0:
            return
        self._entries[self.key(token)] = (clock.monotonic() + self.ttl_seconds, answer)
        self._entries.move_to_end(self.key(token))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class ClientCore:
    def __init__(self, base_url: str, key_id: str, secret: str, options: ClientOptions) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("base_url must be an http(s) URL")
        self.base_url = base_url.rstrip("/")
        # The path the service sees is what is signed, a base path included.
        self.path_prefix = parts.path.rstrip("/")
        self.key_id = key_id
        self._key = secret_key(secret)
        self.options = options
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=options.breaker_fail_max,
            reset_timeout=options.breaker_reset_seconds,
            exclude=[_counts_against_breaker],
            throw_new_error_on_trip=False,
            name="aayu-accounts",
        )
        self.cache = IntrospectionCache(
            options.introspection_cache_seconds, options.introspection_cache_size
        )

    @property
    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.options.timeout, connect=self.options.connect_timeout)

    def url(self, path: str) -> str:
        return self.base_url + path

    def encode(self, payload: dict[str, Any]) -> bytes:
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")

    def headers(self, path: str, body: bytes) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **sign_headers(
                key_id=self.key_id,
                secret=self._key,
                method="POST",
                path=self.path_prefix + path,
                body=body,
            ),
        }

    def retry_kwargs(self, idempotent: bool) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.options.max_attempts if idempotent else 1),
            # backoff_initial * 2**n plus up to backoff_initial of random jitter, capped: clients
            # that failed together do not retry in lockstep.
            "wait": wait_exponential_jitter(
                multiplier=self.options.backoff_initial,
                max=self.options.backoff_max,
                jitter=self.options.backoff_initial,
            ),
            "retry": retry_if_exception(_retryable),
            "reraise": True,
        }

    @staticmethod
    def result(response: httpx.Response) -> dict[str, Any]:
        """The JSON body of a success; raises :class:`ApiError` (and subclasses) otherwise."""
        if response.status_code < 400:
            data = response.json() if response.content else {}
            if not isinstance(data, dict):
                raise ServerError(response.status_code, "unexpected_body", "not an object", {})
            return data
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        code = str(problem.get("code") or f"http_{response.status_code}")
        detail = str(problem.get("detail") or response.reason_phrase)
        if response.status_code >= 500:
            raise ServerError(response.status_code, code, detail, problem)
        if response.status_code == 429:
            retry_after = response.headers.get("Retry-After")
            raise RateLimitedError(
                response.status_code,
                code,
                detail,
                problem,
                float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        raise ApiError(response.status_code, code, detail, problem)

    @staticmethod
    def open_circuit(exc: pybreaker.CircuitBreakerError) -> CircuitOpenError:
        return CircuitOpenError(f"failing fast, the circuit is open: {exc}")

    @staticmethod
    def transport_failure(exc: httpx.TransportError) -> TransportFailure:
        return TransportFailure(f"{type(exc).__name__}: the service did not answer")
