"""Every Prometheus metric of the service, declared in one place.

Conventions: ``aayu_`` prefix, base units (seconds, bytes), ``_total`` for counters, ratios
0-1, and no user, clinic or other high-cardinality labels (a route template is fine, a path
with ids is not). Other modules import the metric objects from here; they never declare their
own, so the full list an operator can scrape is readable on this page.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

# The strategy's thresholds are 1 s (api.latency) and 3 s (auto-rollback): both must be
# bucket boundaries, which prometheus-client's defaults are not.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)

START_TIME = Gauge("aayu_process_start_time_seconds", "Unix time the process started")
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
JOB_QUEUE_DEPTH = Gauge("aayu_job_queue_depth", "Jobs waiting, by status", ["status"])
JOB_QUEUE_OLDEST_AGE = Gauge(
    "aayu_job_queue_oldest_age_seconds", "Age of the oldest job waiting to run"
)
IS_LEADER = Gauge("aayu_leader", "1 while this process holds leadership for singleton duties")


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    status_class = f"{status // 100}xx"
    HTTP_REQUEST_DURATION.labels(method, route, status_class).observe(seconds)
    HTTP_REQUESTS.labels(method, route, status_class).inc()


def observe_statement(seconds: float) -> None:
    DB_QUERY_DURATION.observe(seconds)


def observe_job(kind: str, outcome: str) -> None:
    JOBS_PROCESSED.labels(kind, outcome).inc()


# --- rollout: flags, the two paths, shadow writes, auto-rollback ----------------------
FLAG_CONFIG_VERSION = Gauge(
    "aayu_flag_config_version", "Version of the flag configuration this instance applied"
)
FLAG_SNAPSHOT_AGE = Gauge(
    "aayu_flag_snapshot_age_seconds",
    "Seconds since this instance last confirmed its flag snapshot is current",
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
    "aayu_shadow_divergences", "Documents that differ between the stores at the last reconcile"
)
LEGACY_USERS_MIGRATED = Gauge(
    "aayu_legacy_users_migrated_ratio", "Share of v2.5 users present in the new identity store"
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
    "aayu_audit_last_checkpoint_timestamp_seconds", "Unix time of the last audit checkpoint"
)
AUDIT_ARCHIVED_EVENTS = Counter(
    "aayu_audit_archived_events_total", "Audit events archived and removed by retention"
)
