"""Process-wide billing configuration (grace period, cache lifetime, provider choice).

Service functions called by other areas take only a session (their contract), so the knobs
they need live here: set by :func:`configure` at start-up (app lifespan, CLI, tests), read
lazily from the environment otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aayu_accounts.config import Settings, get_settings


@dataclass(frozen=True)
class BillingRuntime:
    settings: Settings

    @property
    def grace(self) -> timedelta:
        return timedelta(days=self.settings.billing_grace_days)

    @property
    def cache_seconds(self) -> float:
        return self.settings.entitlement_cache_seconds


_current: BillingRuntime | None = None


def configure(settings: Settings) -> BillingRuntime:
    global _current  # noqa: PLW0603 - one configuration per process, swapped by start-up and tests
    _current = BillingRuntime(settings)
    return _current


def current() -> BillingRuntime:
    return _current or configure(get_settings())
