"""The alert rules: the strategy's severities and thresholds, in one table.

Each rule is written twice from the same row: as PromQL for operators who run Prometheus
(``aayu-accounts alerts export``) and as an in-process check the leader evaluates
(:mod:`.evaluator`) for deployments without Prometheus. The dependency alerts (database,
Redis, SMTP, Stripe, secret store) come from the circuit breakers instead (:mod:`.wiring`).
"""

from __future__ import annotations

from dataclasses import dataclass

from aayu_accounts.observability.alert.severity import Severity


@dataclass(frozen=True)
class Rule:
    key: str
    severity: Severity
    summary: str
    runbook: str
    threshold: float
    window_seconds: int
    expr: str  # PromQL; {threshold} and {window} are filled in on export
    for_: str = "0m"
    min_samples: int = 0


def _window(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 and seconds >= 60 else f"{seconds}s"


RULES: tuple[Rule, ...] = (
    # --- critical: page now ---------------------------------------------------------
    Rule(
        "database.down",
        Severity.CRITICAL,
        "The database does not answer health checks",
        "alert-database-down",
        1,
        60,
        "min(aayu_db_up) < {threshold} or max(aayu_circuit_breaker_state"
        '{{dependency="database"}}) == 2',
        for_="1m",
    ),
    Rule(
        "auth.down",
        Severity.CRITICAL,
        "Sign-in is failing: most auth requests end in a server error",
        "alert-auth-down",
        0.5,
        300,
        'sum(rate(aayu_http_requests_total{{route=~"/api/v1/auth/.*",status_class="5xx"}}'
        "[{window}])) / sum(rate(aayu_http_requests_total"
        '{{route=~"/api/v1/auth/.*"}}[{window}])) >= {threshold}',
        for_="2m",
        min_samples=5,
    ),
    Rule(
        "billing.payment_failures",
        Severity.CRITICAL,
        "More than 10 % of payments fail",
        "alert-payment-failures",
        0.10,
        900,
        'sum(increase(aayu_billing_payments_total{{outcome="failed"}}[{window}])) / '
        "sum(increase(aayu_billing_payments_total[{window}])) > {threshold}",
        for_="5m",
        min_samples=5,
    ),
    Rule(
        "audit.chain_broken",
        Severity.CRITICAL,
        "The audit chain verification found a break",
        "alert-audit-chain-broken",
        1,
        0,
        "max(aayu_audit_chain_broken) >= {threshold}",
    ),
    # --- high: within 5 minutes ----------------------------------------------------------
    Rule(
        "http.error_rate",
        Severity.HIGH,
        "More than 5 % of requests end in a server error",
        "alert-error-rate",
        0.05,
        300,
        'sum(rate(aayu_http_requests_total{{status_class="5xx"}}[{window}])) / '
        "sum(rate(aayu_http_requests_total[{window}])) > {threshold}",
        for_="5m",
        min_samples=20,
    ),
    Rule(
        "http.response_time",
        Severity.HIGH,
        "Response time above 3 s (95th percentile)",
        "alert-response-time",
        3.0,
        300,
        "histogram_quantile(0.95, sum by (le) "
        "(rate(aayu_http_request_duration_seconds_bucket[{window}]))) > {threshold}",
        for_="5m",
        min_samples=20,
    ),
    Rule(
        "auth.failed_login_spike",
        Severity.HIGH,
        "Failed sign-ins spike (more than 10 a minute)",
        "alert-failed-login-spike",
        10,
        60,
        "sum(increase(aayu_auth_login_failures_total[{window}])) > {threshold}",
    ),
    Rule(
        "audit.checkpoint_upload_failed",
        Severity.HIGH,
        "Signed audit checkpoints are not reaching the object store",
        "alert-checkpoint-upload-failed",
        1,
        7200,
        'sum(increase(aayu_audit_checkpoints_total{{outcome="upload_failed"}}[{window}])) '
        ">= {threshold}",
    ),
    # --- medium: within the hour -------------------------------------------------------------
    Rule(
        "host.disk_usage",
        Severity.MEDIUM,
        "Disk usage of the data volume above 80 %",
        "alert-disk-usage",
        0.80,
        0,
        "max(aayu_disk_usage_ratio) > {threshold}",
        for_="10m",
    ),
    Rule(
        "host.memory_usage",
        Severity.MEDIUM,
        "Memory usage above 90 %",
        "alert-memory-usage",
        0.90,
        0,
        "max(aayu_memory_usage_ratio) > {threshold}",
        for_="10m",
    ),
    Rule(
        "db.slow_queries_increasing",
        Severity.MEDIUM,
        "Slow database statements (over 1 s) are increasing",
        "alert-slow-queries",
        5,
        900,
        "(sum(increase(aayu_db_query_duration_seconds_count[{window}])) - "
        'sum(increase(aayu_db_query_duration_seconds_bucket{{le="1.0"}}[{window}]))) > '
        "{threshold} and (sum(increase(aayu_db_query_duration_seconds_count[{window}])) - "
        'sum(increase(aayu_db_query_duration_seconds_bucket{{le="1.0"}}[{window}]))) > '
        "(sum(increase(aayu_db_query_duration_seconds_count[{window}] offset {window})) - "
        'sum(increase(aayu_db_query_duration_seconds_bucket{{le="1.0"}}[{window}] '
        "offset {window})))",
        for_="15m",
    ),
)

# Not a rule with a threshold: a notice the leader sends once a day.
DAILY_SUMMARY_KEY = "daily_summary"
DAILY_SUMMARY_RUNBOOK = "alert-daily-summary"

# Alerts the breakers raise (see wiring.py): (dependency, key, severity, summary, runbook).
BREAKER_ALERTS: dict[str, tuple[str, Severity, str, str]] = {
    "database": (
        "database.down",
        Severity.CRITICAL,
        "The database is unreachable: requests fail fast with 503",
        "alert-database-down",
    ),
    "redis": (
        "redis.unavailable",
        Severity.HIGH,
        "Redis is unreachable: limits and lockouts run in-process (stricter)",
        "alert-redis-unavailable",
    ),
    "secret_store": (
        "secret_store.unavailable",
        Severity.CRITICAL,
        "The secret store is unreachable: cached secrets are served until they go stale",
        "alert-secret-store-unavailable",
    ),
    "smtp": (
        "dependency.smtp.unavailable",
        Severity.HIGH,
        "SMTP is unreachable: emails wait in the job queue",
        "alert-dependency-unavailable",
    ),
    "stripe": (
        "dependency.stripe.unavailable",
        Severity.HIGH,
        "Stripe is unreachable: billing calls wait in the job queue",
        "alert-dependency-unavailable",
    ),
}


def promql(rule: Rule) -> str:
    return rule.expr.format(threshold=rule.threshold, window=_window(rule.window_seconds or 300))
