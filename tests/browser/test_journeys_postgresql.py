"""The invitation journey again, with the live server on PostgreSQL + Redis (production's
stores) instead of SQLite. One journey: the console's code is the same; this checks the
stores behind it in a real browser."""

from __future__ import annotations

import pytest

from tests.browser.test_journeys import (
    test_owner_invites_a_clinician_who_accepts_and_signs_in as test_invitation_on_postgresql,
)

pytestmark = pytest.mark.timeout(300)

__all__ = ["test_invitation_on_postgresql"]


@pytest.fixture(scope="module")
def live_server_backend() -> str:
    return "postgresql"
