"""The identity area's per-process parts, built once at start-up and kept on ``app.state``.

Password hasher (with its dummy hash and concurrency bound), password policy, throttles and
their store (Redis or in-process), the CAPTCHA verifier and the session cache. Built in the
app's lifespan, after any fork, so Redis connections and subscriber tasks belong to the
process that uses them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import KeyPurpose, get_keyring, keyring_loaded
from aayu_accounts.identity.auth_session.cache import SessionCache
from aayu_accounts.identity.captcha import AltchaCaptcha, CaptchaVerifier, build_captcha
from aayu_accounts.identity.captcha.altcha_captcha import HmacKeys
from aayu_accounts.identity.password import PasswordHasher, PasswordPolicy
from aayu_accounts.identity.throttle import (
    LoginThrottle,
    MfaThrottle,
    ThrottleStore,
    build_throttle_store,
)
from aayu_accounts.kit.redis_client import create_redis

SeatCheck = Callable[[AsyncSession, str, str], Awaitable[None]]
MembershipChanged = Callable[[AsyncSession, str], None]


async def _no_seat_check(_session: AsyncSession, _org_id: str, _role: str) -> None:
    return None


def _nothing_to_tell(_session: AsyncSession, _org_id: str) -> None:
    return None


@dataclass
class IdentityRuntime:
    """The identity area's per-process parts. ``seat_check`` is the hook billing plugs into
    (identity may not import billing): called with (session, org_id, role) before a member
    joins or becomes a clinician; it raises to refuse. ``membership_changed`` is told
    (session, org_id) whenever a member's role or active state changes, seat or not (billing
    drops its entitlement answers for that clinic on commit). No-ops until the app wires them."""

    settings: Settings
    hasher: PasswordHasher
    policy: PasswordPolicy
    store: ThrottleStore
    login_throttle: LoginThrottle
    mfa_throttle: MfaThrottle
    captcha: CaptchaVerifier
    sessions: SessionCache
    redis: Any = None
    seat_check: SeatCheck = field(default=_no_seat_check)
    membership_changed: MembershipChanged = field(default=_nothing_to_tell)

    @classmethod
    async def start(cls, settings: Settings) -> IdentityRuntime:
        hasher = PasswordHasher.from_settings(settings)
        await hasher.prepare()
        store = build_throttle_store(settings)
        # The shared client settings (socket and connect timeouts, no retries, health checks):
        # a silent Redis makes a revocation's publish fail fast, never hang a request.
        redis: Any = create_redis(settings)
        sessions = SessionCache(
            settings.session_cache_seconds,
            redis=redis,
            channel=f"{settings.redis_prefix}identity:session-invalidate",
        )
        await sessions.start()
        return cls(
            settings=settings,
            hasher=hasher,
            policy=PasswordPolicy.from_settings(settings),
            store=store,
            login_throttle=LoginThrottle(store, settings),
            mfa_throttle=MfaThrottle(store, settings),
            captcha=build_captcha(settings, store, hmac_key=_altcha_key(settings)),
            sessions=sessions,
            redis=redis,
        )

    async def close(self) -> None:
        await self.sessions.stop()
        with contextlib.suppress(Exception):
            await self.store.aclose()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        self.hasher.close()


def _altcha_key(settings: Settings) -> HmacKeys | None:
    """ALTCHA's HMAC keys from the keyring's CAPTCHA key, read at each use, so every instance
    signs and checks challenges alike (a random per-process key would fail behind a load
    balancer) and a rotation or retirement takes effect on the next keyring refresh, not at
    the next restart. ``AAYU_ALTCHA_HMAC_KEY``, when set, is used instead."""
    if settings.altcha_hmac_key:
        return None
    fallback = AltchaCaptcha.random_key()

    def keys() -> list[str]:
        if not keyring_loaded():
            return [fallback]
        keyring = get_keyring()
        if KeyPurpose.CAPTCHA not in keyring.purposes():
            return [fallback]
        current = keyring.current(KeyPurpose.CAPTCHA)
        others = [k for k in keyring.versions(KeyPurpose.CAPTCHA) if k is not current]
        return [_derived(key.secret) for key in (current, *others)]

    return keys


@functools.lru_cache(maxsize=16)
def _derived(secret: bytes) -> str:
    # A key of its own for this one use, derived rather than the keyring's bytes themselves.
    return hmac.new(secret, b"aayu-altcha-v1", hashlib.sha256).hexdigest()


def get_runtime(request: Request) -> IdentityRuntime:
    runtime: IdentityRuntime = request.app.state.identity
    return runtime
