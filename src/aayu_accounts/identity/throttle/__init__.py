"""Sign-in and MFA throttling, shared through Redis when configured."""

from aayu_accounts.identity.throttle.login import (
    Decision,
    LoginThrottle,
    MfaThrottle,
    Signals,
    ThrottleReason,
)
from aayu_accounts.identity.throttle.store import (
    FallbackStore,
    MemoryStore,
    RedisStore,
    ThrottleStore,
    build_throttle_store,
)

__all__ = [
    "Decision",
    "FallbackStore",
    "LoginThrottle",
    "MemoryStore",
    "MfaThrottle",
    "RedisStore",
    "Signals",
    "ThrottleReason",
    "ThrottleStore",
    "build_throttle_store",
]
