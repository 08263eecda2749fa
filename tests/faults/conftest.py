"""Breakers are per process: every test here starts and ends with all of them closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aayu_accounts.kit import resilience


@pytest.fixture(autouse=True)
def closed_breakers() -> Iterator[None]:
    for dependency in resilience.all_dependencies():
        dependency.reset()
    yield
    for dependency in resilience.all_dependencies():
        dependency.configure(resilience.DEFAULT_POLICIES[dependency.name])
        dependency.reset()
