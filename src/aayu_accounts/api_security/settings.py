"""API security settings, read from the same ``AAYU_*`` environment as the rest of the service.

Kept apart from ``config.Settings`` so the knobs (limits, origins, signing window) live next to
the code they tune.
"""

from __future__ import annotations

import json
from typing import Annotated

from limits import parse
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

NO_LIMIT = "none"

# Probes and scrapers poll on a timer from one address; limiting them only produces false
# alarms. Sign-in has its own, stricter throttle in identity on top of this limit.
DEFAULT_ROUTE_LIMITS: dict[str, str] = {
    "/health": NO_LIMIT,
    "/ready": NO_LIMIT,
    "/metrics": NO_LIMIT,
}


class ApiSecuritySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AAYU_", extra="ignore", frozen=True)

    # CORS: origins allowed to call with credentials; empty denies every cross-origin caller.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # API rate limit (the strategy's): per signed-in user, else per client IP.
    rate_limit_default: str = "100/minute"
    # Per-route overrides: longest matching path prefix wins; "none" exempts a prefix.
    # JSON in the environment, e.g. AAYU_RATE_LIMIT_ROUTES='{"/api/v1/auth/": "20/minute"}'.
    rate_limit_routes: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Each service client's limit unless set per client (``clients create --rate-limit``).
    service_client_rate_limit_per_second: int = Field(default=100, ge=1)
    # While Redis is unreachable each instance limits alone, so it allows this fraction of
    # the shared limit: stricter, never looser, than the shared limit across instances.
    rate_limit_fallback_divisor: int = Field(default=4, ge=1)
    # After a Redis failure, how long to use in-process limits before trying Redis again.
    redis_retry_seconds: float = Field(default=5.0, gt=0)

    # Signed service requests (API.md): clock skew accepted either way, nonce memory.
    signature_window_seconds: int = Field(default=300, ge=30, le=3600)
    # How long a rotated-out secret keeps verifying, so clients can be redeployed.
    client_secret_grace_seconds: int = Field(default=86_400, ge=0)
    # How long a process caches a client's secrets: a disable or rotation reaches every
    # instance at once through Redis; this bounds it should that message be lost.
    client_cache_seconds: float = Field(default=30.0, ge=0)

    # Headers: HSTS outside development.
    hsts_max_age_seconds: int = Field(default=63_072_000, ge=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or not origin.startswith(("https://", "http://")):
                raise ValueError(f"CORS origin {origin!r} must be an explicit http(s) origin")
        return value

    @field_validator("rate_limit_routes", mode="before")
    @classmethod
    def _parse_routes(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("rate_limit_default")
    @classmethod
    def _valid_default(cls, value: str) -> str:
        parse(value)
        return value

    @field_validator("rate_limit_routes")
    @classmethod
    def _valid_routes(cls, value: dict[str, str]) -> dict[str, str]:
        for prefix, limit in value.items():
            if not prefix.startswith("/"):
                raise ValueError(f"rate limit route {prefix!r} must start with /")
            if limit != NO_LIMIT:
                parse(limit)
        return value

    def route_limits(self) -> dict[str, str]:
        return {**DEFAULT_ROUTE_LIMITS, **self.rate_limit_routes}
