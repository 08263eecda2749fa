"""Fixtures for the accounts side of identity: cheap Argon2, and helpers that sign people up."""

from __future__ import annotations

import pytest

from aayu_accounts.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Argon2 at 1 MiB / t=1 keeps these tests fast; the parameter and timing tests (and the
    # benchmarks) use the real cost. ALTCHA's work is lowered for the same reason.
    return settings.model_copy(
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, "altcha_max_number": 5000}
    )
