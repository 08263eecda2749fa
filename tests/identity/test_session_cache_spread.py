"""The session cache's lifetime is spread per token: sessions signed in together do not all
reload from the database in the same second, and none outlives ``session_cache_seconds``."""

from __future__ import annotations

from datetime import UTC, datetime

from aayu_accounts.identity.auth_session.cache import CachedPrincipal, SessionCache
from aayu_accounts.identity.tokens import hash_token, new_token


def principal(token_hash: str) -> CachedPrincipal:
    moment = datetime(2026, 11, 29, tzinfo=UTC)
    return CachedPrincipal(
        session_id=token_hash[:8],
        token_hash=token_hash,
        user_id="user-1",
        is_platform_admin=False,
        mfa_enabled=False,
        created_at=moment,
        expires_at=moment,
        idle_timeout_seconds=900,
        last_seen_at=moment,
        last_written_at=moment,
        required_actions=(),
    )


def test_lifetimes_spread_between_three_quarters_and_all_of_the_bound() -> None:
    cache = SessionCache(ttl_seconds=30)
    entries = [principal(hash_token(new_token())) for _ in range(400)]
    for entry in entries:
        cache.put(entry)
    lifetimes = [entry.expires_monotonic - entry.loaded_monotonic for entry in entries]
    assert all(22.5 <= lifetime <= 30 for lifetime in lifetimes)
    # Spread over the quarter, not bunched: at least one in each of its five slices.
    slices = {int((lifetime - 22.5) / 1.5) for lifetime in lifetimes}
    assert slices >= {0, 1, 2, 3, 4}


def test_an_entry_past_its_own_lifetime_is_dropped() -> None:
    cache = SessionCache(ttl_seconds=30)
    entry = principal(hash_token(new_token()))
    cache.put(entry)
    assert cache.get(entry.token_hash) is entry
    entry.expires_monotonic = entry.loaded_monotonic - 1
    assert cache.get(entry.token_hash) is None
    assert len(cache) == 0
