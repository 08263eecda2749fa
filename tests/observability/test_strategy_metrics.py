"""Every metric of the strategy's list is in ``/metrics`` after a scripted session of traffic.

Families whose events belong to other areas are checked by their declaration (``# TYPE``);
the ones this session of traffic produces, or that are refreshed at scrape time, are checked
by their samples too.
"""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from aayu_accounts.config import Settings

TOKEN = "m" * 40

# The strategy's list (issue 7), by metric family.
STRATEGY_METRICS = {
    "api latency per route": "aayu_http_request_duration_seconds",
    "database query time": "aayu_db_query_duration_seconds",
    "error rate (requests by status class)": "aayu_http_requests_total",
    "error rate (problem codes)": "aayu_http_errors_total",
    "uptime / start time": "aayu_process_start_time_seconds",
    "failed logins": "aayu_auth_login_failures_total",
    "sign-ups": "aayu_signups_total",
    "billing failures": "aayu_billing_payments_total",
    "active sessions": "aayu_active_sessions",
    "auth failures": "aayu_auth_failures_total",
    "suspicious activity": "aayu_suspicious_events_total",
    "data exports": "aayu_data_exports_total",
    "pool usage": "aayu_db_pool_connections",
    "job queue depth": "aayu_job_queue_depth",
    "job queue age": "aayu_job_queue_oldest_age_seconds",
    "shadow-write success": "aayu_shadow_writes_total",
    "flag config version": "aayu_flag_config_version",
    "circuit breaker states": "aayu_circuit_breaker_state",
    "rate-limit refusals": "aayu_rate_limit_refusals_total",
    "database health": "aayu_db_up",
    "alerts firing": "aayu_alerts_firing",
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "argon2_memory_kib": 1024,
            "argon2_time_cost": 1,
            "metrics_token": TOKEN,
            # Two failures lock a pair out without a CAPTCHA first (the session's lockout).
            "login_pair_captcha_after": 10,
            "login_pair_block_after": 2,
        }
    )


def _value(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    found = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                found += sample.value
    return found


async def _scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return response.text


# Counters the scripted session below must move, each by (name, labels).
MOVED_BY_THE_SESSION = [
    ("aayu_signups_total", {}),
    ("aayu_auth_login_failures_total", {"reason": "invalid_credentials"}),
    ("aayu_auth_login_failures_total", {"reason": "locked"}),
    ("aayu_auth_failures_total", {"kind": "session_unknown"}),
    ("aayu_suspicious_events_total", {"kind": "lockout"}),
    ("aayu_suspicious_events_total", {"kind": "csrf_failure"}),
    ("aayu_suspicious_events_total", {"kind": "bad_signature"}),
    ("aayu_rate_limit_refusals_total", {"scope": "login"}),
    ("aayu_http_errors_total", {"code": "not_found"}),
    ("aayu_http_requests_total", {"status_class": "4xx"}),
    ("aayu_http_request_duration_seconds_count", {"route": "/api/v1/auth/register"}),
    ("aayu_db_query_duration_seconds_count", {}),
]


async def test_every_strategy_metric_is_exposed_after_traffic(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    before = await _scrape(client)
    # A scripted session: liveness, readiness, a sign-up, failed sign-ins up to a lockout, an
    # unknown session token, a cross-site cookie request, an unsigned service call, a 404, a 422.
    assert (await client.get("/health")).status_code == 200
    await client.get("/ready")
    signup = await client.post(
        "/api/v1/auth/register",
        json={
            "email": f"user.{secrets.token_hex(4)}@clinic-example.org",
            "password": f"Vq{secrets.token_urlsafe(12)}!7z",
            "full_name": "Asha Verma",
            "organization_name": "Lotus Family Clinic",
        },
    )
    assert signup.status_code == 202, signup.text
    failed = await client.post(
        "/api/v1/auth/login",
        json={"email": "nobody@clinic-example.org", "password": "wrong-password-123"},
    )
    assert failed.status_code == 401
    again = await client.post(
        "/api/v1/auth/login",
        json={"email": "nobody@clinic-example.org", "password": "wrong-password-123"},
    )
    assert again.status_code == 401
    locked = await client.post(
        "/api/v1/auth/login",
        json={"email": "nobody@clinic-example.org", "password": "wrong-password-123"},
    )
    assert locked.status_code == 429, locked.text
    unknown = await client.get("/api/v1/me", headers={"authorization": "Bearer " + "x" * 43})
    assert unknown.status_code == 401
    cross_site = await client.post(
        "/api/v1/auth/logout",
        headers={"origin": "https://evil.example", "cookie": "aayu_session=" + "y" * 43},
    )
    assert cross_site.status_code == 403, cross_site.text
    unsigned = await client.post("/api/v1/service/entitlements/check", json={})
    assert unsigned.status_code == 401, unsigned.text
    assert (await client.get("/no/such/page")).status_code == 404
    assert (await client.post("/api/v1/auth/login", json={})).status_code == 422

    text = await _scrape(client)
    declared = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))
    missing = {what: n for what, n in STRATEGY_METRICS.items() if n not in declared}
    assert not missing, missing

    def samples(name: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(name)]

    # Produced by this traffic or refreshed at scrape time: samples, not just declarations.
    buckets = samples("aayu_http_request_duration_seconds_bucket")
    assert any('le="1.0"' in line for line in buckets)
    assert any('le="3.0"' in line for line in buckets)
    assert any('route="/api/v1/auth/register"' in line for line in buckets)
    assert not any("clinic-example" in line for line in text.splitlines())  # no user labels
    assert samples("aayu_db_query_duration_seconds_count")
    assert any('status_class="4xx"' in line for line in samples("aayu_http_requests_total"))
    assert any('code="not_found"' in line for line in samples("aayu_http_errors_total"))
    assert samples("aayu_process_start_time_seconds")
    assert samples("aayu_signups_total")
    assert samples("aayu_auth_login_failures_total")
    assert samples("aayu_active_sessions")
    assert samples("aayu_job_queue_depth")
    # Each event of the session moved its counter (not merely a sample left by another test).
    unmoved = [
        (name, labels)
        for name, labels in MOVED_BY_THE_SESSION
        if _value(text, name, **labels) <= _value(before, name, **labels)
    ]
    assert not unmoved, unmoved
    # Gauges refreshed at scrape time or set at start-up.
    for gauge in (
        "aayu_db_pool_connections",
        "aayu_job_queue_oldest_age_seconds",
        "aayu_flag_config_version",
        "aayu_active_sessions",
    ):
        assert samples(gauge), gauge
    breaker_lines = samples("aayu_circuit_breaker_state")
    for dependency in ("database", "redis", "stripe", "smtp", "secret_store"):
        assert any(f'dependency="{dependency}"' in line for line in breaker_lines), dependency
