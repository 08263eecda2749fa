"""No audit row written anywhere in the suite holds a password, token or TOTP code the suite
used (see tests/audit/sweep.py; this module runs last)."""

from __future__ import annotations

import httpx
import pytest

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from tests.audit.sweep import SWEEP
from tests.identity.accounts.helpers import login, signed_up


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, "altcha_max_number": 5000}
    )


async def test_the_sweep_sees_secrets_and_audit_rows(
    client: httpx.AsyncClient, db: Database
) -> None:
    """The sweep's own check: a sign-up and a failed sign-in are seen on both sides."""
    account = await signed_up(client, db)
    wrong = account.password + "x"
    account.password, right = wrong, account.password
    assert (await login(client, account)).status_code == 401
    assert right in SWEEP.secrets
    assert wrong in SWEEP.secrets
    assert account.token in SWEEP.secrets
    assert any(account.user_id in row for row in SWEEP.audit_rows)
    assert any("identity:login:failed" in row for row in SWEEP.audit_rows)


def test_no_audit_row_holds_a_secret_used_in_the_suite() -> None:
    assert SWEEP.audit_rows, "no audit row was seen: the sweep is not watching"
    assert SWEEP.secrets, "no secret was seen: the sweep is not watching"
    leaks = SWEEP.leaks()
    assert not leaks, f"secrets found in audit rows: {leaks[:5]}"


def test_the_sweep_finds_a_leak_and_only_whole_tokens() -> None:
    from tests.audit.sweep import Sweep

    sweep = Sweep()
    sweep.add_json(b'{"password": "Vq-secret-Pass!7z", "code": "123456", "token": "abc"}')
    assert sweep.secrets == {"Vq-secret-Pass!7z", "123456"}  # "abc" is too short to judge
    sweep.audit_rows.append("{'details': {'target': 'order 91234567'}}")
    assert sweep.leaks() == []
    sweep.audit_rows.append("{'details': {'note': 'typed Vq-secret-Pass!7z by mistake'}}")
    assert [prefix for prefix, _ in sweep.leaks()] == ["Vq…"]
