"""The per-process parts of API security, built in the app's lifespan (after any fork).

One Redis client (when configured) serves the nonce memory and the rate limits; without Redis
both live in this process, which is right for the embedded single-process mode.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItem
from starlette.requests import Request
from starlette.types import Scope

from aayu_accounts.api_security.rate_limit.limiter import Limiter, parse_limit
from aayu_accounts.api_security.request_signing.directory import ClientDirectory
from aayu_accounts.api_security.request_signing.nonces import (
    MemoryNonceStore,
    NonceStore,
    RedisNonceStore,
)
from aayu_accounts.api_security.request_signing.verifier import SignatureVerifier
from aayu_accounts.api_security.service_client import changes as client_changes
from aayu_accounts.api_security.settings import ApiSecuritySettings
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.identity.deps import optional_session
from aayu_accounts.kit.redis_client import create_redis

log = structlog.get_logger(__name__)


@dataclass
class ApiSecurityRuntime:
    settings: Settings
    security: ApiSecuritySettings
    db: Database
    limiter: Limiter
    nonces: NonceStore
    directory: ClientDirectory
    verifier: SignatureVerifier
    # Refused signatures per IP before the refusals themselves are rate limited.
    refusal_limit: RateLimitItem
    redis: Any = None

    @classmethod
    def build(
        cls, settings: Settings, security: ApiSecuritySettings, db: Database
    ) -> ApiSecurityRuntime:
        redis: Any = None
        fallback = MemoryNonceStore()
        nonces: NonceStore = fallback
        redis = create_redis(settings)
        if redis is not None:
            nonces = RedisNonceStore(
                redis,
                settings.redis_prefix,
                retry_seconds=security.redis_retry_seconds,
                fallback=fallback,
            )
        limiter = Limiter(
            redis=redis,
            key_prefix=settings.redis_prefix,
            fallback_divisor=security.rate_limit_fallback_divisor,
            retry_seconds=security.redis_retry_seconds,
        )
        directory = ClientDirectory(
            db,
            security.client_cache_seconds,
            redis=redis,
            channel=f"{settings.redis_prefix}{client_changes.CHANNEL_SUFFIX}" if redis else None,
        )
        with contextlib.suppress(RuntimeError):  # built outside a loop: no listener
            directory.start()
        return cls(
            settings=settings,
            security=security,
            db=db,
            limiter=limiter,
            nonces=nonces,
            directory=directory,
            verifier=SignatureVerifier(directory, nonces, security.signature_window_seconds),
            refusal_limit=parse_limit(security.rate_limit_default),
            redis=redis,
        )

    async def resolve_user(self, scope: Scope) -> str | None:
        """The signed-in user of a request (cookie or Bearer), through identity's cached
        lookup; None for anonymous callers and for tokens that are not live sessions."""
        # An app composed without the identity runtime limits by IP only.
        if not hasattr(scope["app"].state, "identity"):
            return None
        try:
            principal = await optional_session(Request(scope))
        except Exception as exc:
            log.warning("rate_limit.principal_lookup_failed", error=type(exc).__name__)
            return None
        return principal.user_id if principal is not None else None

    async def close(self) -> None:
        await self.directory.stop()
        await self.nonces.aclose()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
