"""Billing test fixtures: the billing runtime configured from the test settings, an empty
entitlement cache, and the local provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aayu_accounts.billing import runtime
from aayu_accounts.billing.entitlement.cache import cache
from aayu_accounts.billing.payment_provider.local import LocalProvider
from aayu_accounts.config import Settings


@pytest.fixture
def billing(settings: Settings) -> Iterator[runtime.BillingRuntime]:
    configured = runtime.configure(settings)
    cache.clear()
    yield configured
    cache.clear()


@pytest.fixture
def local_provider() -> LocalProvider:
    return LocalProvider()
