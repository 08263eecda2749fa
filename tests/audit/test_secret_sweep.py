"""What the whole suite's traffic shows about the trail (see tests/audit/sweep.py; this module
runs last): no audit row holds a password, token or TOTP code the suite used, and every route
that changes state left an event when it succeeded."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from tests.audit.sweep import STATE_CHANGING, SWEEP
from tests.fixtures.routes import api_routes
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


def test_the_sweep_reads_text_not_timestamps() -> None:
    """A timestamp's microseconds are six digits: a TOTP code in the same second is no leak."""
    from datetime import UTC, datetime

    from tests.audit.sweep import Sweep, _content

    sweep = Sweep()
    sweep.add_json(b'{"code": "861234"}')
    at = datetime(2026, 11, 28, 22, 18, 34, 861234, tzinfo=UTC)
    sweep.audit_rows.extend(_content({"occurred_at": at, "sequence": 861234, "action": "x"}))
    assert sweep.leaks() == []
    sweep.audit_rows.extend(_content([{"details": {"note": "code 861234"}}]))
    assert [prefix for prefix, _ in sweep.leaks()] == ["86…"]


# Routes that take POST but change nothing worth an event (queries with a body), or whose
# writes are data rather than actions. Each needs its reason.
NOT_AUDITED = {
    ("POST", "/api/v1/service/sessions/introspect"): "a read: is this token a live session?",
    ("POST", "/api/v1/service/entitlements/check"): "a read: may this user use a feature?",
    ("POST", "/api/v1/service/flags/evaluate"): "a read: the flags for a user",
    ("POST", "/api/v1/service/usage"): "metered usage data, counted (not an action)",
    ("POST", "/api/v1/orgs/{org_id}/subscription/preview"): "a read: the proration preview",
    ("POST", "/billing/subscribe/review"): "a read: the console's invoice preview",
    ("POST", "/billing/change/review"): "a read: the console's proration preview",
}


def test_every_state_changing_route_leaves_an_event(app: FastAPI) -> None:
    changing = {
        (method, route.path)
        for route in api_routes(app)
        for method in route.methods & STATE_CHANGING
    } - set(NOT_AUDITED)
    silent = sorted(
        key
        for key, (calls, audited) in SWEEP.state_changes.items()
        if key in changing and calls and not audited
    )
    assert not silent, f"succeeded without recording an audit event: {silent}"
    if SWEEP.full_run:
        unexercised = sorted(changing - set(SWEEP.state_changes))
        assert not unexercised, f"state-changing routes no test called successfully: {unexercised}"
