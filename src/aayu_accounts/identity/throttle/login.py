"""Sign-in and MFA throttling with the numbers of issue 4 (the design, not suggestions).

Sign-in, counted over sliding windows of *failures*:

- per (IP, account): a CAPTCHA after 3 in 15 minutes; after 5 the pair is refused for 15
  minutes (429 + ``Retry-After``) whether the next password is right or not;
- per IP across accounts (credential stuffing): a CAPTCHA after 10 in 15 minutes; after 50 the
  IP is refused for 15 minutes and ``brute_force_detected`` tells the caller to audit and alert;
- per account across IPs: after 100 in an hour every attempt needs a CAPTCHA. Never a hard
  lock: a lock an attacker can trigger would lock a clinician out of their clinic (ASVS 2.2.1,
  NIST 800-63B 5.2.2).

MFA: 5 failures in 15 minutes per pending sign-in (session) or per IP, then refused.

Keys are SHA-256 digests of the IP and account, so no address or email lands in Redis.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import StrEnum

from aayu_accounts.config import Settings
from aayu_accounts.identity.throttle.store import ThrottleStore
from aayu_accounts.kit import clock


class ThrottleReason(StrEnum):
    PAIR_BLOCKED = "pair_blocked"
    IP_BLOCKED = "ip_blocked"
    SESSION_BLOCKED = "session_blocked"
    PAIR_FAILURES = "pair_failures"
    IP_FAILURES = "ip_failures"
    ACCOUNT_FAILURES = "account_failures"
    STORE_DEGRADED = "store_degraded"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do before checking a credential.

    ``retry_after`` set: refuse with 429 and ``Retry-After: retry_after`` (seconds), without
    checking the credential. Otherwise ``captcha_required``: refuse unless a valid CAPTCHA
    solution came with the attempt. ``reason`` is a tag for audit, never shown to the client.
    ``pair_failures``: the (IP, account) pair's recent failures when checked, so a correct
    sign-in with nothing to forgive skips the store's round trip.
    """

    captcha_required: bool
    retry_after: int | None
    reason: ThrottleReason | None
    pair_failures: int = 0

    @property
    def refused(self) -> bool:
        return self.retry_after is not None


@dataclass(frozen=True, slots=True)
class Signals:
    """What a recorded failure changed, for the caller's audit events and alerts."""

    brute_force_detected: bool
    pair_blocked: bool
    ip_blocked: bool
    captcha_required: bool
    # "ip" (stuffing from one address) or "account" (one account from many), with the signal.
    brute_force_scope: str | None = None


def _digest(kind: str, value: str) -> str:
    return kind + ":" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def _retry_after(until: float, now: float) -> int:
    return max(1, math.ceil(until - now))


class LoginThrottle:
    def __init__(self, store: ThrottleStore, settings: Settings) -> None:
        self._store = store
        self._s = settings

    def _keys(self, ip: str, account_key: str) -> tuple[str, str, str]:
        account = account_key.strip().casefold()
        return (
            _digest("login:pair", f"{ip}\x00{account}"),
            _digest("login:ip", ip),
            _digest("login:account", account),
        )

    async def check(self, ip: str, account_key: str) -> Decision:
        """Whether this attempt may go ahead, and whether it needs a CAPTCHA first."""
        s = self._s
        pair, by_ip, account = self._keys(ip, account_key)
        now = clock.now().timestamp()
        (pair_n, ip_n, account_n), (pair_until, ip_until) = await self._store.read(
            [
                (pair, s.login_pair_window_seconds),
                (by_ip, s.login_ip_window_seconds),
                (account, s.login_account_window_seconds),
            ],
            ["block:" + pair, "block:" + by_ip],
            now,
        )
        if pair_until is not None or ip_until is not None:
            until = max(u for u in (pair_until, ip_until) if u is not None)
            blocked = (
                ThrottleReason.PAIR_BLOCKED if until == pair_until else ThrottleReason.IP_BLOCKED
            )
            return Decision(True, _retry_after(until, now), blocked)
        reason: ThrottleReason | None = None
        if pair_n >= s.login_pair_captcha_after:
            reason = ThrottleReason.PAIR_FAILURES
        elif ip_n >= s.login_ip_captcha_after:
            reason = ThrottleReason.IP_FAILURES
        elif account_n >= s.login_account_captcha_after:
            reason = ThrottleReason.ACCOUNT_FAILURES
        elif self._store.degraded:
            reason = ThrottleReason.STORE_DEGRADED
        return Decision(reason is not None, None, reason, pair_failures=pair_n)

    async def record_failure(self, ip: str, account_key: str) -> Signals:
        """Count a failed sign-in (unknown account included) and apply any block it earns."""
        s = self._s
        pair, by_ip, account = self._keys(ip, account_key)
        now = clock.now().timestamp()
        pair_n, ip_n, account_n = await self._store.hit(
            [
                (pair, s.login_pair_window_seconds),
                (by_ip, s.login_ip_window_seconds),
                (account, s.login_account_window_seconds),
            ],
            now,
        )
        pair_blocked = pair_n >= s.login_pair_block_after
        if pair_blocked:
            await self._store.block("block:" + pair, now + s.login_pair_block_seconds, now)
        ip_blocked = ip_n >= s.login_ip_block_after
        if ip_blocked:
            await self._store.block("block:" + by_ip, now + s.login_ip_block_seconds, now)
        # Raised once per crossing (the store serializes counts across instances), so one
        # attack makes one alert, not fifty.
        brute_force_scope = (
            "ip"
            if ip_n == s.login_ip_block_after
            else "account"
            if account_n == s.login_account_captcha_after
            else None
        )
        return Signals(
            brute_force_detected=brute_force_scope is not None,
            brute_force_scope=brute_force_scope,
            pair_blocked=pair_blocked,
            ip_blocked=ip_blocked,
            captcha_required=(
                pair_n >= s.login_pair_captcha_after
                or ip_n >= s.login_ip_captcha_after
                or account_n >= s.login_account_captcha_after
                or self._store.degraded
            ),
        )

    async def record_success(
        self, ip: str, account_key: str, *, checked: Decision | None = None
    ) -> None:
        """A correct sign-in forgives this pair's failures (not the IP's, not the account's).

        With the attempt's ``checked`` decision showing none, there is nothing to forgive and
        the store is not asked (a failure recorded in between stays counted: stricter).
        """
        if checked is not None and checked.pair_failures == 0:
            return
        pair, _, _ = self._keys(ip, account_key)
        await self._store.clear([pair])


class MfaThrottle:
    """5 failed codes per 15 minutes per pending sign-in (session) or per IP, then refused."""

    def __init__(self, store: ThrottleStore, settings: Settings) -> None:
        self._store = store
        self._limit = settings.mfa_attempt_limit
        self._window = settings.mfa_attempt_window_seconds

    @staticmethod
    def _keys(session_key: str, ip: str) -> tuple[str, str]:
        return _digest("mfa:session", session_key), _digest("mfa:ip", ip)

    async def check(self, session_key: str, ip: str) -> Decision:
        session, by_ip = self._keys(session_key, ip)
        now = clock.now().timestamp()
        _, (session_until, ip_until) = await self._store.read(
            [], ["block:" + session, "block:" + by_ip], now
        )
        if session_until is None and ip_until is None:
            return Decision(False, None, None)
        until = max(u for u in (session_until, ip_until) if u is not None)
        reason = (
            ThrottleReason.SESSION_BLOCKED if until == session_until else ThrottleReason.IP_BLOCKED
        )
        return Decision(False, _retry_after(until, now), reason)

    async def record_failure(self, session_key: str, ip: str) -> Decision:
        """Count a wrong code; the returned decision says whether the next try is refused."""
        session, by_ip = self._keys(session_key, ip)
        now = clock.now().timestamp()
        counts = await self._store.hit([(session, self._window), (by_ip, self._window)], now)
        for key, count in zip((session, by_ip), counts, strict=True):
            if count >= self._limit:
                await self._store.block("block:" + key, now + self._window, now)
        return await self.check(session_key, ip)

    async def record_success(self, session_key: str, ip: str) -> None:
        session, _ = self._keys(session_key, ip)
        await self._store.clear([session])
