"""The leader's in-process rule checks, fed from a registry of their own: thresholds, windows
and the minimum sample counts that make a quiet period inconclusive rather than green."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aayu_accounts.config import Settings
from aayu_accounts.observability.alert.evaluator import Evaluator
from aayu_accounts.observability.alert.rules import RULES, Rule
from aayu_accounts.observability.metrics import DB_BUCKETS, LATENCY_BUCKETS


class Fake:
    """The same metric names the service declares, in a registry this test owns."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["method", "route", "status_class"]
        self.requests = Counter("aayu_http_requests_total", "", labels, registry=self.registry)
        self.latency = Histogram(
            "aayu_http_request_duration_seconds",
            "",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.payments = Counter(
            "aayu_billing_payments_total", "", ["outcome"], registry=self.registry
        )
        self.queries = Histogram(
            "aayu_db_query_duration_seconds", "", buckets=DB_BUCKETS, registry=self.registry
        )
        self.failures = Counter(
            "aayu_auth_login_failures_total", "", ["reason"], registry=self.registry
        )
        self.chain = Gauge("aayu_audit_chain_broken", "", registry=self.registry)
        self.checkpoints = Counter(
            "aayu_audit_checkpoints_total", "", ["outcome"], registry=self.registry
        )

    def request(self, route: str, status: int, seconds: float = 0.05) -> None:
        status_class = f"{status // 100}xx"
        self.requests.labels("POST", route, status_class).inc()
        self.latency.labels("POST", route, status_class).observe(seconds)


def _rule(key: str) -> Rule:
    return next(r for r in RULES if r.key == key)


def _evaluator(fake: Fake, tmp_path: Path) -> Evaluator:
    settings = Settings.model_validate({"env": "test", "var_dir": tmp_path})
    evaluator = Evaluator(settings, registry_factory=lambda: fake.registry)
    evaluator.sample()
    return evaluator


def test_error_rate_and_auth_down(tmp_path: Path) -> None:
    fake = Fake()
    evaluator = _evaluator(fake, tmp_path)
    for _ in range(10):
        fake.request("/api/v1/me", 500)
    evaluator.sample()
    # 10 requests: below the 20-request minimum, so inconclusive, not firing and not clear.
    assert evaluator.check(_rule("http.error_rate")).firing is None
    for _ in range(90):
        fake.request("/api/v1/me", 200)
    evaluator.sample()
    assert evaluator.check(_rule("http.error_rate")).firing is True  # 10 %
    for _ in range(6):
        fake.request("/api/v1/auth/login", 503)
    fake.request("/api/v1/auth/login", 200)
    evaluator.sample()
    assert evaluator.check(_rule("auth.down")).firing is True  # 6 of 7 sign-ins fail


def test_error_rate_below_threshold_is_clear(tmp_path: Path) -> None:
    fake = Fake()
    evaluator = _evaluator(fake, tmp_path)
    for index in range(100):
        fake.request("/api/v1/me", 500 if index < 4 else 200)
    evaluator.sample()
    assert evaluator.check(_rule("http.error_rate")).firing is False  # 4 % <= 5 %


def test_response_time_over_3s_at_the_95th_percentile(tmp_path: Path) -> None:
    fake = Fake()
    evaluator = _evaluator(fake, tmp_path)
    for index in range(100):
        fake.request("/api/v1/me", 200, 4.0 if index < 6 else 0.1)
    evaluator.sample()
    assert evaluator.check(_rule("http.response_time")).firing is True
    fast = Fake()
    evaluator = _evaluator(fast, tmp_path)
    for index in range(100):
        fast.request("/api/v1/me", 200, 2.9 if index < 50 else 0.1)
    evaluator.sample()
    assert evaluator.check(_rule("http.response_time")).firing is False


def test_payment_failures_over_ten_percent(tmp_path: Path) -> None:
    fake = Fake()
    evaluator = _evaluator(fake, tmp_path)
    fake.payments.labels("succeeded").inc(9)
    fake.payments.labels("failed").inc(1)
    evaluator.sample()
    assert evaluator.check(_rule("billing.payment_failures")).firing is False  # exactly 10 %
    fake.payments.labels("failed").inc(1)
    evaluator.sample()
    assert evaluator.check(_rule("billing.payment_failures")).firing is True


def test_slow_queries_failed_logins_and_audit_chain(tmp_path: Path) -> None:
    fake = Fake()
    evaluator = _evaluator(fake, tmp_path)
    for _ in range(6):
        fake.queries.observe(1.5)
    fake.failures.labels("invalid_credentials").inc(11)
    fake.chain.set(1)
    evaluator.sample()
    assert evaluator.check(_rule("db.slow_queries_increasing")).firing is True
    assert evaluator.check(_rule("auth.failed_login_spike")).firing is True
    assert evaluator.check(_rule("audit.chain_broken")).firing is True
    fake.chain.set(0)
    evaluator.sample()
    assert evaluator.check(_rule("audit.chain_broken")).firing is False


def test_checkpoint_upload_failures_fire_until_a_clean_two_hours(tmp_path: Path) -> None:
    rule = _rule("audit.checkpoint_upload_failed")
    fake = Fake()
    evaluator = _evaluator(fake, tmp_path)
    fake.checkpoints.labels("written").inc()
    evaluator.sample()
    assert evaluator.check(rule).firing is False
    fake.checkpoints.labels("upload_failed").inc()  # a 4xx: the breaker stays closed
    evaluator.sample()
    assert evaluator.check(rule).firing is True
    fake.checkpoints.labels("uploaded").inc(2)  # the next run catches up
    evaluator.sample()
    assert evaluator.check(rule).firing is True  # still within the window
    # Two hours later with no new failure, the rule clears.
    evaluator.history = deque(
        (moment - rule.window_seconds - 60, s) for moment, s in evaluator.history
    )
    evaluator.sample()
    assert evaluator.check(rule).firing is False


def test_disk_over_80_and_memory_over_90_percent(tmp_path: Path) -> None:
    fake = Fake()
    # Fed from the fake registry (the real host's shares go to the service's own gauges).
    disk = Gauge("aayu_disk_usage_ratio", "", registry=fake.registry)
    memory = Gauge("aayu_memory_usage_ratio", "", registry=fake.registry)
    evaluator = _evaluator(fake, tmp_path)
    disk.set(0.80)
    memory.set(0.90)
    evaluator.sample()
    assert evaluator.check(_rule("host.disk_usage")).firing is False  # exactly 80 %
    assert evaluator.check(_rule("host.memory_usage")).firing is False  # exactly 90 %
    disk.set(0.81)
    memory.set(0.91)
    evaluator.sample()
    assert evaluator.check(_rule("host.disk_usage")).firing is True
    assert evaluator.check(_rule("host.memory_usage")).firing is True
    assert _rule("host.disk_usage").severity.value == "medium"
    assert _rule("host.memory_usage").severity.value == "medium"


def test_every_rule_but_the_breakers_has_an_in_process_check() -> None:
    # database.down comes from the database breaker and the health check (wiring.py).
    from aayu_accounts.observability.alert.evaluator import checked_keys

    assert {r.key for r in RULES} - set(checked_keys()) == {"database.down"}
