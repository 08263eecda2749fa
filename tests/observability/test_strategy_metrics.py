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
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, "metrics_token": TOKEN}
    )


async def test_every_strategy_metric_is_exposed_after_traffic(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # A scripted session: liveness, readiness, a sign-up, a failed sign-in, a 404, a 422.
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
    assert (await client.get("/no/such/page")).status_code == 404
    assert (await client.post("/api/v1/auth/login", json={})).status_code == 422

    response = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    text = response.text
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
    breaker_lines = samples("aayu_circuit_breaker_state")
    for dependency in ("database", "redis", "stripe", "smtp", "secret_store"):
        assert any(f'dependency="{dependency}"' in line for line in breaker_lines), dependency
