"""The session cache: lifetimes are spread per token (sessions signed in together do not all
reload from the database in the same second, and none outlives ``session_cache_seconds``), and
a lookup that an invalidation overtook while it was loading is not cached."""

from __future__ import annotations

from datetime import UTC, datetime

from aayu_accounts.identity.auth_session.cache import CachedPrincipal, Invalidation, SessionCache
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
        cache.put(entry, loaded_at=cache.generation)
    lifetimes = [entry.expires_monotonic - entry.loaded_monotonic for entry in entries]
    assert all(22.5 <= lifetime <= 30 for lifetime in lifetimes)
    # Spread over the quarter, not bunched: at least one in each of its five slices.
    slices = {int((lifetime - 22.5) / 1.5) for lifetime in lifetimes}
    assert slices >= {0, 1, 2, 3, 4}


def test_an_entry_past_its_own_lifetime_is_dropped() -> None:
    cache = SessionCache(ttl_seconds=30)
    entry = principal(hash_token(new_token()))
    cache.put(entry, loaded_at=cache.generation)
    assert cache.get(entry.token_hash) is entry
    entry.expires_monotonic = entry.loaded_monotonic - 1
    assert cache.get(entry.token_hash) is None
    assert len(cache) == 0


def test_a_lookup_loaded_before_an_invalidation_is_not_cached() -> None:
    # The database read began, then the session was revoked (by this instance's commit or
    # another's message), then the read finished: caching it would serve a revoked session.
    cache = SessionCache(ttl_seconds=30)
    entry = principal(hash_token(new_token()))
    loaded_at = cache.generation
    cache.apply(Invalidation(token_hashes={entry.token_hash}))
    cache.put(entry, loaded_at=loaded_at)
    assert cache.get(entry.token_hash) is None
    # Loaded after the invalidation: cached as usual.
    cache.put(entry, loaded_at=cache.generation)
    assert cache.get(entry.token_hash) is entry
