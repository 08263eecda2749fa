"""Every Prometheus metric of the service, declared in one place.

Conventions: ``aayu_`` prefix, base units (seconds, bytes), ``_total`` for counters, ratios
0-1, and no user, clinic or other high-cardinality labels (a route template is fine, a path
with ids is not). Other modules import the metric objects from here; they never declare their
own, so the full list an operator can scrape is readable on this page.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess


def collector_registry() -> CollectorRegistry:
    """What ``/metrics`` exposes and the alert evaluator samples: this process's registry, or
    with several workers (``PROMETHEUS_MULTIPROC_DIR``, set by ``serve --workers N``) the merge
    of every live worker's files, so any worker answers with the whole instance's numbers."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    forget_dead_processes(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def forget_dead_processes(directory: str | Path) -> list[int]:
    """Drop the live gauges of workers that are gone.

    A worker killed without a goodbye (SIGKILL, the OOM killer; uvicorn starts another) leaves
    its ``live*`` gauge files behind, and ``livesum``/``livemin``/``livemax`` would go on
    counting it: pool connections summed twice, ``aayu_db_up`` stuck at a dead worker's 0.
    prometheus-client leaves this to a hook uvicorn does not have, so each merge does it.
    Counters keep a dead worker's counts (they happened); only live gauges are forgotten.
    """
    dead: set[int] = set()
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid_text = path.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and int(pid_text) not in dead and not _alive(int(pid_text)):
            dead.add(int(pid_text))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return sorted(dead)


def mark_this_process_dead() -> None:
    """On a worker's orderly stop: its live gauges leave with it (multi-process mode only)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to forget
        return True
    return True


# The strategy's thresholds are 1 s (api.latency) and 3 s (auto-rollback): both must be
# bucket boundaries, which prometheus-client's defaults are not.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)

START_TIME = Gauge(
    "aayu_process_start_time_seconds",
    "Unix time the process started",
    multiprocess_mode="min",
)
START_TIME.set(time.time())

HTTP_REQUEST_DURATION = Histogram(
    "aayu_http_request_duration_seconds",
    "API latency per route template",
    ["method", "route", "status_class"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "aayu_http_requests_total",
    "HTTP requests per route and status class",
    ["method", "route", "status_class"],
)
HTTP_ERRORS = Counter(
    "aayu_http_errors_total", "Responses with a problem code, by code", ["status", "code"]
)
DB_QUERY_DURATION = Histogram(
    "aayu_db_query_duration_seconds", "Database statement time", buckets=DB_BUCKETS
)
JOBS_PROCESSED = Counter(
    "aayu_jobs_processed_total", "Background jobs run, by kind and outcome", ["kind", "outcome"]
)
JOB_QUEUE_DEPTH = Gauge(
    "aayu_job_queue_depth", "Jobs waiting, by status", ["status"], multiprocess_mode="mostrecent"
)
JOB_QUEUE_OLDEST_AGE = Gauge(
    "aayu_job_queue_oldest_age_seconds",
    "Age of the oldest job waiting to run",
    multiprocess_mode="mostrecent",
)
IS_LEADER = Gauge(
    "aayu_leader",
    "1 while this process holds leadership for singleton duties",
    multiprocess_mode="livemax",
)


_request_children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    # Children cached per (method, route template, status class): ``labels()`` validates and
    # locks on every call, and this runs on every request. Bounded: route templates only.
    key = (method, route, status // 100)
    children = _request_children.get(key)
    if children is None:
        status_class = f"{status // 100}xx"
        children = (
            HTTP_REQUEST_DURATION.labels(method, route, status_class),
            HTTP_REQUESTS.labels(method, route, status_class),
        )
        _request_children[key] = children
    children[0].observe(seconds)
    children[1].inc()


def observe_statement(seconds: float) -> None:
    DB_QUERY_DURATION.observe(seconds)


def observe_job(kind: str, outcome: str) -> None:
    JOBS_PROCESSED.labels(kind, outcome).inc()


# --- rollout: flags, the two paths, shadow writes, auto-rollback ----------------------
FLAG_CONFIG_VERSION = Gauge(
    "aayu_flag_config_version",
    "Version of the flag configuration this instance applied",
    # The lowest version any live worker applied: a laggard shows up.
    multiprocess_mode="livemin",
)
FLAG_SNAPSHOT_AGE = Gauge(
    "aayu_flag_snapshot_age_seconds",
    "Seconds since this instance last confirmed its flag snapshot is current",
    multiprocess_mode="livemax",
)
FLAG_UPDATES = Counter(
    "aayu_flag_updates_total",
    "Flag snapshots reloaded, by what told this instance (pubsub, notify, poll, local)",
    ["source"],
)
ROLLOUT_REQUESTS = Counter(
    "aayu_rollout_requests_total",
    "Requests per capability (auth, documents), path (new, legacy) and outcome",
    ["capability", "path", "outcome"],
)
ROLLOUT_DURATION = Histogram(
    "aayu_rollout_duration_seconds",
    "Time to serve a request per capability and path",
    ["capability", "path"],
    buckets=LATENCY_BUCKETS,
)
ROLLOUT_FALLBACKS = Counter(
    "aayu_rollout_fallbacks_total",
    "New-path failures served by the legacy path (FALLBACK), by capability and reason",
    ["capability", "reason"],
)
SHADOW_WRITES = Counter(
    "aayu_shadow_writes_total", "Shadow writes to the non-authoritative store", ["outcome"]
)
SHADOW_DIVERGENCES = Gauge(
    "aayu_shadow_divergences",
    "Documents that differ between the stores at the last reconcile",
    multiprocess_mode="mostrecent",
)
LEGACY_USERS_MIGRATED = Gauge(
    "aayu_legacy_users_migrated_ratio",
    "Share of v2.5 users present in the new identity store",
    multiprocess_mode="mostrecent",
)
LEGACY_USERS_MIGRATED_AT_SIGN_IN = Counter(
    "aayu_legacy_users_migrated_at_sign_in_total",
    "v2.5 users whose identity account was created at their first sign-in",
)
AUTO_ROLLBACK_VERDICTS = Counter(
    "aayu_auto_rollback_verdicts_total",
    "Monitor evaluations per capability, window and verdict (ok, breach, inconclusive)",
    ["capability", "window", "verdict"],
)
ROLLBACKS = Counter("aayu_rollbacks_total", "Rollbacks executed, by kind", ["kind"])
ALERTS = Counter("aayu_alerts_total", "Alerts raised, by severity and name", ["severity", "name"])

# Audit trail
AUDIT_EXPORTS = Counter(
    "aayu_audit_exports_total", "Audit exports, by format and outcome", ["format", "outcome"]
)
AUDIT_EXPORTED_EVENTS = Counter("aayu_audit_exported_events_total", "Audit events exported")
AUDIT_CHECKPOINTS = Counter(
    "aayu_audit_checkpoints_total", "Audit checkpoints written, by outcome", ["outcome"]
)
AUDIT_CHECKPOINT_GAPS = Counter(
    "aayu_audit_checkpoint_gaps_total", "Checkpoint gaps found (longer than twice the interval)"
)
AUDIT_LAST_CHECKPOINT = Gauge(
    "aayu_audit_last_checkpoint_timestamp_seconds",
    "Unix time of the last audit checkpoint",
    multiprocess_mode="max",
)
AUDIT_ARCHIVED_EVENTS = Counter(
    "aayu_audit_archived_events_total", "Audit events archived and removed by retention"
)


# --- the strategy's list: reliability, business and security signals ------------------
# Declared here so the areas that own the events increment them; the alert rules in
# observability/alert/rules.py and the exported Prometheus rules read these names.
AUTH_LOGIN_FAILURES = Counter(
    "aayu_auth_login_failures_total",
    "Failed sign-ins (failed.logins), by reason (invalid_credentials, captcha, locked, mfa)",
    ["reason"],
)
AUTH_FAILURES = Counter(
    "aayu_auth_failures_total",
    "Refused authentications of any kind (bad token, expired session, bad API key), by kind",
    ["kind"],
)
SIGNUPS = Counter("aayu_signups_total", "Accounts registered (user.signups)")
ACTIVE_SESSIONS = Gauge(
    "aayu_active_sessions",
    "Sessions alive (not revoked, not expired) at the last count",
    multiprocess_mode="mostrecent",
)
BILLING_PAYMENTS = Counter(
    "aayu_billing_payments_total",
    "Payment attempts by outcome (succeeded, failed): billing.failures is the failed share",
    ["outcome"],
)
SUSPICIOUS_EVENTS = Counter(
    "aayu_suspicious_events_total",
    "Suspicious activity, by kind (lockout, bad_signature, csrf_failure, replay, brute_force)",
    ["kind"],
)
DATA_EXPORTS = Counter(
    "aayu_data_exports_total", "Data exports (user data, audit), by kind", ["kind"]
)
RATE_LIMIT_REFUSALS = Counter(
    "aayu_rate_limit_refusals_total",
    "Requests refused with 429, by scope (user, ip, service_client, login)",
    ["scope"],
)
# 0 by default, so an instance that never verified does not look broken.
AUDIT_CHAIN_BROKEN = Gauge(
    "aayu_audit_chain_broken",
    "1 when the last audit chain verification found a break, 0 when it passed",
    multiprocess_mode="livemax",
)
DB_POOL_CONNECTIONS = Gauge(
    "aayu_db_pool_connections",
    "Database pool connections by state (checked_out, idle, overflow) and the pool size",
    ["state"],
    multiprocess_mode="livesum",
)
DB_UP = Gauge(
    "aayu_db_up",
    "1 when the last periodic database health check answered, else 0",
    multiprocess_mode="livemin",
)
REDIS_UP = Gauge(
    "aayu_redis_up",
    "1 when Redis answered the last health check, 0 when limits run in-process",
    multiprocess_mode="livemin",
)
CIRCUIT_BREAKER_STATE = Gauge(
    "aayu_circuit_breaker_state",
    "Breaker state per outbound dependency: 0 closed, 1 half-open, 2 open",
    ["dependency"],
    multiprocess_mode="livemax",
)
DEPENDENCY_CALLS = Counter(
    "aayu_dependency_calls_total",
    "Calls to outbound dependencies by outcome (ok, error, rejected, timeout)",
    ["dependency", "outcome"],
)
DISK_USAGE = Gauge(
    "aayu_disk_usage_ratio", "Used share of the data volume (0-1)", multiprocess_mode="max"
)
MEMORY_USAGE = Gauge(
    "aayu_memory_usage_ratio", "Used share of the host memory (0-1)", multiprocess_mode="max"
)
ALERTS_FIRING = Gauge(
    "aayu_alerts_firing",
    "Alerts currently firing, by severity (as the leader last evaluated)",
    ["severity"],
    multiprocess_mode="livemax",
)
ALERT_NOTIFICATIONS = Counter(
    "aayu_alert_notifications_total",
    "Alert notifications delivered, by channel and outcome",
    ["channel", "outcome"],
)

BREAKER_STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}


def observe_breaker_state(dependency: str, state: str) -> None:
    CIRCUIT_BREAKER_STATE.labels(dependency).set(BREAKER_STATE_VALUES.get(state, 2))


def observe_dependency_call(dependency: str, outcome: str) -> None:
    DEPENDENCY_CALLS.labels(dependency, outcome).inc()


# --- api security: signed requests and Redis fallbacks -----------------------------------------
SIGNATURE_REFUSALS = Counter(
    "aayu_signature_refusals_total",
    "Signed service requests refused, by refusal code (signature_missing, ...)",
    ["code"],
)
SIGNED_REQUESTS = Counter(
    "aayu_signed_requests_total", "Signed service requests whose signature was accepted"
)
# 429s are counted in RATE_LIMIT_REFUSALS, CSRF refusals in SUSPICIOUS_EVENTS (above).
REDIS_FALLBACKS = Counter(
    "aayu_redis_fallbacks_total",
    "Times a component fell back to in-process state because Redis failed",
    ["component"],
)

# --- billing: revenue (same numbers as `aayu-accounts billing report`) --------------------------
BILLING_MRR = Gauge(
    "aayu_billing_mrr_cents",
    "Monthly recurring revenue in minor units (Stripe's definition: active and past_due, "
    "monthly-normalized, trials excluded), by currency",
    ["currency"],
    multiprocess_mode="mostrecent",
)
BILLING_ARR = Gauge(
    "aayu_billing_arr_cents",
    "Annual run rate (12 x MRR) in minor units, by currency",
    ["currency"],
    multiprocess_mode="mostrecent",
)
BILLING_SUBSCRIPTIONS = Gauge(
    "aayu_billing_subscriptions",
    "Subscriptions by plan and status",
    ["plan", "status"],
    multiprocess_mode="mostrecent",
)
BILLING_SEATS = Gauge(
    "aayu_billing_seats",
    "Paid seats on active and past_due subscriptions",
    multiprocess_mode="mostrecent",
)
BILLING_TRIAL_CONVERSION = Gauge(
    "aayu_billing_trial_conversion_ratio",
    "Share of ended trials that became paying subscriptions",
    multiprocess_mode="mostrecent",
)
BILLING_CHURN_30D = Gauge(
    "aayu_billing_churn_30d_ratio",
    "Subscriptions canceled in the last 30 days over those paying at the window's start",
    multiprocess_mode="mostrecent",
)
BILLING_FAILURE_RATE = Gauge(
    "aayu_billing_failure_ratio",
    "Share of charged invoices of the last 30 days still unpaid (open or uncollectible)",
    multiprocess_mode="mostrecent",
)
