"""The operations console: what it charts (from the stores that exist) and its pages."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import update

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import EventQuery, list_platform_events
from aayu_accounts.console.operations.signals import (
    capability_status,
    current_snapshot,
    duration_text,
    history_series,
    new_path_series,
    p95_from_buckets,
    process_totals,
)
from aayu_accounts.db import Database
from aayu_accounts.models.user import User
from aayu_accounts.observability.alert.evaluator import Snapshot
from aayu_accounts.rollout.auto_rollback.monitor import Thresholds
from aayu_accounts.rollout.outcomes import Capability, Outcome, OutcomeWindow
from tests.console.helpers import csrf_of, submit
from tests.console.test_billing_pages import as_browser
from tests.identity.accounts.helpers import Account, login, signed_up, totp_now


def _snapshot(  # noqa: PLR0917 - six counters, positional for the tables below
    ok: int, errors: int, fast: int, slow: int, shadow_ok: int, shadow_bad: int
) -> Snapshot:
    """A metrics snapshot: requests by status class, a latency histogram with two buckets
    (<= 0.1 s, <= 3 s) over one route, and shadow writes by outcome."""
    route = {"method": "GET", "route": "/x"}
    return {
        "aayu_http_requests_total": [
            ({**route, "status_class": "2xx"}, float(ok)),
            ({**route, "status_class": "5xx"}, float(errors)),
        ],
        "aayu_http_request_duration_seconds_bucket": [
            ({**route, "le": "0.1"}, float(fast)),
            ({**route, "le": "3.0"}, float(fast + slow)),
            ({**route, "le": "+Inf"}, float(fast + slow)),
        ],
        "aayu_shadow_writes_total": [
            ({"outcome": "success"}, float(shadow_ok)),
            ({"outcome": "failure"}, float(shadow_bad)),
        ],
        "aayu_process_start_time_seconds": [({}, 1000.0)],
    }


def test_history_becomes_per_interval_rates() -> None:
    history = [
        (100.0, _snapshot(0, 0, 0, 0, 0, 0)),
        (130.0, _snapshot(90, 10, 100, 0, 10, 0)),  # 10 % errors, all fast
        (160.0, _snapshot(190, 10, 100, 100, 15, 5)),  # no errors, half slow; 5 of 10 shadow ok
        (190.0, _snapshot(190, 10, 100, 100, 15, 5)),  # idle: no data, not zero
    ]
    series = history_series(history, now_wall=10_000.0, now_mono=190.0)
    assert series.samples == 4
    assert series.error_rate.points == [(9940.0, 0.1), (9970.0, 0.0), (10_000.0, None)]
    assert series.p95_seconds.points == [(9940.0, 0.1), (9970.0, 3.0), (10_000.0, None)]
    assert series.shadow_success.points == [(9940.0, 1.0), (9970.0, 0.5), (10_000.0, None)]


def test_long_history_is_thinned_to_the_requested_points() -> None:
    history = [(float(i), _snapshot(i, 0, i, 0, 0, 0)) for i in range(241)]
    series = history_series(history, now_wall=1000.0, now_mono=240.0, points=24)
    assert len(series.error_rate.points) == 24
    assert series.error_rate.points[-1][0] == 1000.0
    assert history_series(history[:1]).error_rate.points == []


def test_p95_of_the_histogram_between_snapshots() -> None:
    assert p95_from_buckets(_snapshot(0, 0, 94, 6, 0, 0), None) == 3.0
    assert p95_from_buckets(_snapshot(0, 0, 95, 5, 0, 0), None) == 0.1
    assert p95_from_buckets({}, None) is None


def test_new_path_series_per_minute_and_capability() -> None:
    window = OutcomeWindow()
    now = 1_000_000
    for _ in range(9):
        window.record(Capability.AUTH, Outcome.OK, 0.02, at=now - 30)
    window.record(Capability.AUTH, Outcome.ERROR, 4.0, at=now - 30)
    series = new_path_series(window, minutes=3, now=now)
    auth, documents = series.error_rate
    assert auth.label == "auth"
    assert auth.points == [(now - 120, None), (now - 60, None), (now, 0.1)]
    assert [y for _x, y in documents.points] == [None, None, None]
    assert series.p95_seconds[0].points[-1] == (now, 5.0)  # the 4 s request, in the 5 s bucket
    assert series.requests == 10


async def test_capability_status_judges_without_acting(frozen_clock: object) -> None:
    window = OutcomeWindow()
    for _ in range(60):
        window.record(Capability.AUTH, Outcome.ERROR, 0.01)
    statuses = await capability_status(
        window, Thresholds(min_requests=50), short_seconds=60, long_seconds=300
    )
    auth = next(s for s in statuses if s.capability == "auth")
    assert auth.breached
    assert any("error rate" in reason for reason in auth.reasons)
    documents = next(s for s in statuses if s.capability == "documents")
    assert documents.short_verdict == "inconclusive"
    assert not documents.breached


def test_process_totals_and_durations() -> None:
    totals = process_totals(_snapshot(190, 10, 0, 0, 15, 5))
    assert totals.availability == 0.95
    assert totals.shadow_success == 0.75
    assert totals.uptime_seconds(now=4600.0) == 3600.0
    assert process_totals({}).availability is None
    assert duration_text(3600 * 26 + 60) == "1 d 2 h"
    assert duration_text(3900) == "1 h 5 min"
    assert duration_text(None) == "unknown"


# --- the pages ----------------------------------------------------------------------------


async def platform_admin_with_mfa(console: httpx.AsyncClient, db: Database) -> Account:
    """A platform administrator who enrolled TOTP (the session token rotates on enrollment)."""
    account = await signed_up(console, db)
    async with db.session_scope() as session:
        await session.execute(
            update(User).where(User.id == account.user_id).values(is_platform_admin=True)
        )
    fresh = await login(console, account)
    account.token = fresh.json()["token"]
    console.cookies.clear()
    started = await console.post("/api/v1/me/mfa/totp", headers=account.auth)
    assert started.status_code == 200, started.text
    confirmed = await console.post(
        "/api/v1/me/mfa/totp/confirm",
        json={"code": totp_now(started.json()["secret"])},
        headers=account.auth,
    )
    assert confirmed.status_code == 200, confirmed.text
    account.token = confirmed.json()["token"] or account.token
    console.cookies.clear()
    return account


async def test_operations_needs_a_platform_admin_with_mfa(
    console: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(console, db)
    as_browser(console, owner)
    assert (await console.get("/operations")).status_code == 403
    async with db.session_scope() as session:
        await session.execute(
            update(User).where(User.id == owner.user_id).values(is_platform_admin=True)
        )
    console.cookies.clear()
    fresh = await login(console, owner)
    assert "token" in fresh.json(), fresh.text
    owner.token = fresh.json()["token"]
    as_browser(console, owner)
    refused = await console.get("/operations")
    assert refused.status_code == 403  # a platform admin, but without MFA


async def test_overview_shows_criteria_status_flags_and_charts(
    console: httpx.AsyncClient, db: Database
) -> None:
    admin = await platform_admin_with_mfa(console, db)
    as_browser(console, admin)
    page = await console.get("/operations")
    assert page.status_code == 200, page.text
    assert "MRR against the $5,000 goal" in page.text
    assert 'id="criterion-migrated"' in page.text
    assert 'id="criterion-shadow"' in page.text
    assert 'id="criterion-uptime"' in page.text
    assert 'id="auto-rollback-state"' in page.text
    assert 'hx-get="/operations/verdicts"' in page.text
    fragment = await console.get("/operations/verdicts", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert fragment.text.count("inconclusive") == 4  # no traffic: both windows, both paths
    full = await console.get("/operations/verdicts")
    assert 'id="verdict-table"' in full.text
    assert "<html" in full.text
    for key in ("NEW_AUTH", "NEW_DATABASE", "BILLING", "SHADOW_WRITES", "FALLBACK"):
        assert f'id="flag-{key}"' in page.text
    assert page.text.count("<svg") >= 7  # the MRR goal and six charts
    assert 'type="range"' in page.text
    assert 'href="/operations/rollback"' in page.text


async def test_flag_change_through_htmx_is_saved_audited_and_swapped(
    console: httpx.AsyncClient, db: Database
) -> None:
    admin = await platform_admin_with_mfa(console, db)
    as_browser(console, admin)
    page = await console.get("/operations")
    response = await console.post(
        "/operations/flags/NEW_AUTH",
        data={
            "csrf_token": csrf_of(page.text),
            "enabled": "on",
            "rollout_percent": "25",
            "allow_users": "beta-1, beta-2",
            "schedule": "2031-01-01T09:00Z 50\n2031-01-03T09:00Z off",
        },
        headers={"Origin": "https://testserver", "HX-Request": "true"},
    )
    assert response.status_code == 200, response.text
    assert "<html" not in response.text  # the flag's card only
    assert 'id="flag-NEW_AUTH"' in response.text
    assert "on · 25 %" in response.text
    assert "2031-01-01T09:00Z 50" in response.text
    api = await console.get("/api/v1/admin/flags/NEW_AUTH", headers=admin.auth)
    body = api.json()
    assert (body["enabled"], body["rollout_percent"]) == (True, 25)
    assert body["allow"]["user_ids"] == ["beta-1", "beta-2"]
    assert [s["rollout_percent"] for s in body["schedule"]] == [50, None]
    async with db.session_scope(write=False) as session:
        events = await list_platform_events(
            session, EventQuery(action=AuditAction.FLAG_UPDATED, actor_id=admin.user_id)
        )
    assert [e.target_id for e in events.items] == ["NEW_AUTH"]

    invalid = await console.post(
        "/operations/flags/NEW_AUTH",
        data={"csrf_token": csrf_of(page.text), "rollout_percent": "250"},
        headers={"Origin": "https://testserver", "HX-Request": "true"},
    )
    assert invalid.status_code == 422
    assert 'data-code="validation_error"' in invalid.text
    bad_schedule = await console.post(
        "/operations/flags/NEW_AUTH",
        data={"csrf_token": csrf_of(page.text), "rollout_percent": "5", "schedule": "soon 10"},
        headers={"Origin": "https://testserver"},
    )
    assert bad_schedule.status_code == 422
    assert "Schedule line 1" in bad_schedule.text


async def test_rollback_has_a_confirmation_step_then_records_the_incident(
    console: httpx.AsyncClient, db: Database
) -> None:
    admin = await platform_admin_with_mfa(console, db)
    as_browser(console, admin)
    await submit(
        console,
        "/operations",
        "/operations/flags/NEW_AUTH",
        {"enabled": "on", "rollout_percent": "25"},
    )
    confirm = await console.get("/operations/rollback")
    assert confirm.status_code == 200
    assert 'id="confirm-rollback"' in confirm.text
    assert "NEW_AUTH" in confirm.text
    done = await console.post(
        "/operations/rollback",
        data={"csrf_token": csrf_of(confirm.text), "reason": "console test"},
        headers={"Origin": "https://testserver"},
    )
    assert done.status_code == 303, done.text
    incident_page = await console.get(done.headers["location"])
    assert incident_page.status_code == 200
    assert 'id="incident-reason">console test<' in incident_page.text
    assert "# Incident" in incident_page.text  # the report
    flag = (await console.get("/api/v1/admin/flags/NEW_AUTH", headers=admin.auth)).json()
    assert flag["enabled"] is False
    listing = await console.get("/operations/incidents")
    assert "console test" in listing.text
    assert (await console.get("/operations/incidents/nope")).status_code == 404


async def test_development_outbox_lists_and_shows_messages(
    console: httpx.AsyncClient, db: Database
) -> None:
    admin = await platform_admin_with_mfa(console, db)
    as_browser(console, admin)
    listing = await console.get("/outbox")
    assert listing.status_code == 200, listing.text
    link = re.search(r'<a href="(/outbox/[^"]+)">', listing.text)
    assert link is not None  # at least the admin's own verification email
    message = await console.get(link.group(1))
    assert message.status_code == 200
    assert 'id="message-body"' in message.text
    assert (await console.get("/outbox/not-an-id")).status_code == 404
    console.cookies.clear()
    owner = await signed_up(console, db)
    as_browser(console, owner)
    assert (await console.get("/outbox")).status_code == 403


_REFERENCE = re.compile(r'\b(?:src|href|action|hx-get|hx-post)="([^"]*)"')


def external_references(html: str) -> list[str]:
    """Every src/href/action (and htmx URL) that is not a same-origin path or fragment."""
    return [
        ref
        for ref in _REFERENCE.findall(html)
        if not (ref.startswith(("/", "#", "?")) and not ref.startswith("//"))
    ]


async def test_no_page_of_these_areas_references_anything_outside_the_service(
    console: httpx.AsyncClient, db: Database
) -> None:
    admin = await platform_admin_with_mfa(console, db)
    as_browser(console, admin)
    await submit(console, "/operations/rollback", "/operations/rollback", {"reason": "refs"})
    incident = re.search(
        r'href="(/operations/incidents/[^"]+)"', (await console.get("/operations/incidents")).text
    )
    assert incident is not None
    outbox = re.search(r'href="(/outbox/[^"]+)"', (await console.get("/outbox")).text)
    assert outbox is not None
    admin_pages = [
        "/operations",
        "/operations/rollback",
        "/operations/verdicts",
        "/operations/incidents",
        incident.group(1),
        "/outbox",
        outbox.group(1),
    ]
    console.cookies.clear()
    owner = await signed_up(console, db)
    as_browser(console, owner)
    await submit(
        console,
        "/billing",
        "/billing/subscribe",
        {"plan_id": "clinic_monthly", "seats": "1", "payment_method": "pm_card_visa"},
    )
    owner_pages = ["/billing", "/audit", "/audit?outcome=success"]
    for account, pages in ((admin, admin_pages), (owner, owner_pages)):
        as_browser(console, account)
        for path in pages:
            response = await console.get(path)
            assert response.status_code == 200, path
            assert external_references(response.text) == [], path
    review = await submit(
        console, "/billing", "/billing/change/review", {"plan_id": "clinic_monthly", "seats": "2"}
    )
    assert external_references(review.text) == []
    assert external_references('<a href="https://cdn.example/x.js">') == [
        "https://cdn.example/x.js"
    ]
    assert external_references('<img src="//cdn.example/x.png">') == ["//cdn.example/x.png"]


def test_current_snapshot_carries_the_criteria_families() -> None:
    totals = process_totals(current_snapshot())
    assert totals.started_at is not None
    assert totals.requests >= 0
