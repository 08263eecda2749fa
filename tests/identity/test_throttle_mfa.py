"""MFA attempts: 5 failures per 15 minutes per pending sign-in (session) or per IP, then 429."""

from __future__ import annotations

from aayu_accounts.config import Settings
from aayu_accounts.identity.throttle import MfaThrottle, ThrottleReason, ThrottleStore
from aayu_accounts.kit.clock import FrozenClock
from tests.identity.throttle_fixtures import throttle_store

__all__ = ["throttle_store"]

SESSION = "pending-sign-in-1"
IP = "203.0.113.50"


async def test_five_wrong_codes_refuse_the_session_for_15_minutes(
    throttle_store: ThrottleStore, settings: Settings, frozen_clock: FrozenClock
) -> None:
    mfa = MfaThrottle(throttle_store, settings)
    for _ in range(4):
        assert not (await mfa.check(SESSION, IP)).refused
        assert not (await mfa.record_failure(SESSION, IP)).refused
    after_fifth = await mfa.record_failure(SESSION, IP)
    assert after_fifth.retry_after == 900
    decision = await mfa.check(SESSION, IP)
    assert decision.refused
    assert decision.retry_after == 900
    assert not decision.captcha_required
    # The same pending sign-in from another address is still refused (per session)...
    moved = await mfa.check(SESSION, "198.51.100.1")
    assert moved.retry_after == 900
    assert moved.reason is ThrottleReason.SESSION_BLOCKED
    # ...and so is a fresh pending sign-in from the same address (per IP).
    same_ip = await mfa.check("pending-sign-in-2", IP)
    assert same_ip.reason is ThrottleReason.IP_BLOCKED
    assert not (await mfa.check("pending-sign-in-3", "198.51.100.1")).refused
    frozen_clock.advance(900)
    assert not (await mfa.check(SESSION, IP)).refused


async def test_a_correct_code_forgives_the_session(
    throttle_store: ThrottleStore, settings: Settings, frozen_clock: FrozenClock
) -> None:
    mfa = MfaThrottle(throttle_store, settings)
    for _ in range(4):
        await mfa.record_failure(SESSION, IP)
    await mfa.record_success(SESSION, IP)
    assert not (await mfa.record_failure(SESSION, "198.51.100.2")).refused
    # The IP's count is not forgiven: it reaches 5 with this one.
    assert (await mfa.record_failure("pending-sign-in-9", IP)).reason is ThrottleReason.IP_BLOCKED


async def test_failures_older_than_the_window_do_not_count(
    throttle_store: ThrottleStore, settings: Settings, frozen_clock: FrozenClock
) -> None:
    mfa = MfaThrottle(throttle_store, settings)
    for _ in range(4):
        await mfa.record_failure(SESSION, IP)
    frozen_clock.advance(901)
    for _ in range(4):
        assert not (await mfa.record_failure(SESSION, IP)).refused
