"""Settings from the environment (prefix ``AAYU_``), matching API.md's configuration table.

Development defaults make ``make run`` work with nothing configured. ``AAYU_ENV=production``
refuses to start while any setting is insecure or missing, naming every problem at once, so an
operator fixes them in one pass instead of one restart per problem.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SecretsProvider(StrEnum):
    ENV = "env"
    FILE = "file"
    VAULT = "vault"
    AZURE = "azure"


class PaymentProvider(StrEnum):
    LOCAL = "local"
    STRIPE = "stripe"


class CaptchaProvider(StrEnum):
    ALTCHA = "altcha"
    TURNSTILE = "turnstile"
    HCAPTCHA = "hcaptcha"


# HIPAA §164.316(b)(2)(i): documentation, audit records included, is kept six years.
AUDIT_MIN_RETENTION_DAYS = 2190


class InsecureConfiguration(Exception):
    """Raised at start-up in production; ``problems`` names every insecure or missing setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "refusing to start in production: " + "; ".join(problems),
        )


class Settings(BaseSettings):
    # Fields that hold or may hold a credential (URLs can carry passwords or tokens; a chat
    # webhook URL is itself the secret) are left out of repr, so a settings object that
    # reaches a log line, an error or a debugger's dump shows none of them.
    model_config = SettingsConfigDict(env_prefix="AAYU_", extra="ignore", frozen=True)

    env: Environment = Environment.DEVELOPMENT
    database_url: str = Field(default="sqlite+aiosqlite:///./var/aayu.db", repr=False)
    redis_url: str | None = Field(default=None, repr=False)
    # Every Redis key starts with this, so several deployments (or test runs) can share one.
    redis_prefix: str = "aayu:"
    smtp_url: str | None = Field(default=None, repr=False)
    smtp_from: str = "Aayu Accounts <no-reply@aayuwell.local>"
    payment_provider: PaymentProvider = PaymentProvider.LOCAL
    stripe_api_key: str | None = Field(default=None, repr=False)
    stripe_webhook_secret: str | None = Field(default=None, repr=False)
    stripe_api_base: str | None = None
    # Billing: a past_due clinic keeps full access this long while payment is retried.
    billing_grace_days: int = Field(default=7, ge=0)
    # How long an instance trusts its cached entitlements (changes made on this instance
    # invalidate at once; this bounds staleness from other instances).
    entitlement_cache_seconds: float = Field(default=5.0, ge=0)
    # The plan catalog as JSON (a list of plans); None uses the built-in catalog.
    billing_plans_file: Path | None = None
    secrets_provider: SecretsProvider = SecretsProvider.FILE
    secrets_dir: Path = Path("./var/secrets")
    # Secret store (crypto/secret_store): remote providers, cache and resilience.
    vault_url: str | None = None
    vault_token: str | None = Field(default=None, repr=False)
    vault_mount: str = "secret"
    vault_path_prefix: str = "aayu-accounts/"
    vault_namespace: str | None = None
    azure_key_vault_url: str | None = None
    secret_store_timeout_seconds: float = Field(default=5.0, gt=0)
    secret_store_retries: int = Field(default=3, ge=0)
    secret_store_breaker_failures: int = Field(default=5, ge=1)
    secret_store_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    secret_cache_ttl_seconds: float = Field(default=300.0, ge=0)
    # How long a cached secret keeps being served while the provider is down.
    secret_stale_seconds: float = Field(default=3600.0, ge=0)
    # Keyring: how often a process reloads key versions, and how long a new version waits
    # (published, verifying) before it signs/encrypts; must exceed the refresh interval.
    keyring_refresh_seconds: float = Field(default=30.0, gt=0)
    key_activation_delay_seconds: float = Field(default=120.0, ge=0)
    metrics_token: str | None = Field(default=None, repr=False)
    public_url: str = "http://127.0.0.1:8000"
    legacy_auth_file: Path | None = None
    legacy_store_dir: Path = Path("./var/legacy-store")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    var_dir: Path = Path("./var")

    # Database pool: the strategy's DatabasePool (max 20, 2 s connect, 30 s idle).
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    db_pool_recycle_seconds: int = Field(default=30, ge=1)
    db_statement_timeout_seconds: float = Field(default=10.0, gt=0)
    db_slow_statement_seconds: float = Field(default=1.0, gt=0)
    # Embedded mode: a write transaction (BEGIN IMMEDIATE) waits this long for another one.
    # Sign-ins hold it across an Argon2 verify (~130 ms), so bursts queue rather than fail.
    sqlite_busy_timeout_ms: int = Field(default=15000, ge=0)
    # Resilience (kit/resilience.py): the strategy's 30 s database health check, and breakers
    # that make requests fail fast with 503 while a dependency is down.
    db_health_check_seconds: float = Field(default=30.0, gt=0)
    db_breaker_failures: int = Field(default=3, ge=1)
    db_breaker_reset_seconds: float = Field(default=5.0, gt=0)
    redis_timeout_seconds: float = Field(default=0.5, gt=0)
    redis_health_check_seconds: float = Field(default=5.0, gt=0)
    redis_breaker_reset_seconds: float = Field(default=5.0, gt=0)

    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Jobs: the embedded worker runs inside ``serve`` unless turned off for a separate worker.
    run_worker_in_process: bool = True
    job_poll_seconds: float = Field(default=1.0, gt=0)
    job_max_attempts: int = Field(default=8, ge=1)
    leader_lease_seconds: int = Field(default=30, ge=5)

    # Audit trail (HIPAA §164.312(b), §164.316(b)(2): six years). Checkpoints of the chain head
    # are signed and written outside the database; None puts them under var_dir.
    audit_checkpoint_dir: Path | None = None
    audit_checkpoint_interval_seconds: int = Field(default=3600, ge=60)
    audit_retention_days: int = Field(default=AUDIT_MIN_RETENTION_DAYS)
    audit_archive_dir: Path | None = None
    audit_exports_per_day: int = Field(default=100, ge=1)
    audit_checkpoint_url: str | None = Field(
        default=None,
        description="where checkpoints go besides the directory: `s3://bucket/prefix` "
        "(an S3-compatible object store) or `file:///path` (replaces the directory)",
    )
    audit_s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (unset: AWS for the region)"
    )
    audit_s3_region: str = Field(default="us-east-1", description="region of the S3 bucket")
    audit_s3_access_key_id: str | None = Field(
        default=None, description="S3 access key id (unset: boto3's credential chain)"
    )
    audit_s3_secret_access_key: str | None = Field(
        default=None,
        description="S3 secret access key (unset: boto3's credential chain)",
        repr=False,
    )
    audit_s3_timeout_seconds: float = Field(
        default=10.0, gt=0, description="timeout of one object-store call"
    )
    audit_append_mode: Literal["inline", "deferred"] = Field(
        default="inline",
        description="`inline`: each event is linked into the chain in its own transaction "
        "(commits take turns); `deferred` (PostgreSQL): linked right after commit, in batches "
        "(docs/audit.md)",
    )

    # Passwords: Argon2id at the strategy's cost (m=64 MiB, t=3, p=1). Each hash holds
    # argon2_memory_kib of RAM, so at most argon2_max_concurrency run at once (None: CPU count).
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)
    argon2_max_concurrency: int | None = Field(default=None, ge=1)
    # NIST SP 800-63B: at least 8 characters whatever the configuration; 12 by default.
    password_min_length: int = Field(default=12, ge=8, le=128)
    password_min_strength: int = Field(default=3, ge=0, le=4)
    # An offline list of breached passwords (one per line, or HIBP "SHA1HEX:count"); no network.
    breached_passwords_file: Path | None = None

    # Sign-in throttling (issue 4): counts in sliding windows; CAPTCHA before any lockout.
    login_pair_captcha_after: int = Field(default=3, ge=1)
    login_pair_block_after: int = Field(default=5, ge=1)
    login_pair_window_seconds: int = Field(default=900, ge=1)
    login_pair_block_seconds: int = Field(default=900, ge=1)
    login_ip_captcha_after: int = Field(default=10, ge=1)
    login_ip_block_after: int = Field(default=50, ge=1)
    login_ip_window_seconds: int = Field(default=900, ge=1)
    login_ip_block_seconds: int = Field(default=900, ge=1)
    # Per account across IPs: CAPTCHA only, never a hard lock (no one can lock a clinician out).
    login_account_captcha_after: int = Field(default=100, ge=1)
    login_account_window_seconds: int = Field(default=3600, ge=1)
    mfa_attempt_limit: int = Field(default=5, ge=1)
    mfa_attempt_window_seconds: int = Field(default=900, ge=1)

    # CAPTCHA: ALTCHA (self-hosted proof of work) unless a third-party provider is chosen.
    captcha_provider: CaptchaProvider = CaptchaProvider.ALTCHA
    captcha_secret: str | None = Field(default=None, repr=False)
    captcha_site_key: str | None = None
    captcha_verify_url: str | None = None
    # None: a random key per process (fine for one instance); the keyring supplies it later.
    altcha_hmac_key: str | None = Field(default=None, repr=False)
    altcha_max_number: int = Field(default=100_000, ge=1000)
    altcha_expires_seconds: int = Field(default=300, ge=10)

    # Sessions (issue 4): HIPAA automatic logoff after 15 idle minutes (a clinic may lower it
    # to 5), re-authentication after 12 hours whatever the activity (ASVS 3.3).
    session_idle_minutes: int = Field(default=15, ge=5, le=15)
    session_absolute_hours: int = Field(default=12, ge=1, le=12)
    # last_seen_at is written at most this often per session: no write per request.
    session_touch_seconds: int = Field(default=60, ge=1)
    # How long a session lookup stays cached; revocations invalidate it at once regardless.
    session_cache_seconds: int = Field(default=30, ge=0)
    email_verification_hours: int = Field(default=24, ge=1)
    password_reset_minutes: int = Field(default=30, ge=5)
    invitation_days: int = Field(default=7, ge=1)
    mfa_login_minutes: int = Field(default=5, ge=1)
    # Versions of the legal documents; a new version asks every user to accept at sign-in.
    terms_version: str = "2026-11-01"
    privacy_version: str = "2026-11-01"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)

    # Alerts (observability/alert): channels, grouping and repeat intervals. Webhook bodies are
    # signed with HMAC-SHA256 under alert_webhook_secret (header X-Aayu-Signature).
    alert_webhook_urls: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    alert_webhook_secret: str | None = Field(default=None, repr=False)
    alert_webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    alert_email_recipients: Annotated[list[str], NoDecode] = Field(default_factory=list)
    alert_log: bool = True
    alert_evaluate_seconds: float = Field(default=30.0, gt=0)
    alert_group_wait_seconds: float = Field(default=10.0, ge=0)
    alert_repeat_critical_seconds: int = Field(default=900, ge=1)
    alert_repeat_high_seconds: int = Field(default=3600, ge=1)
    alert_repeat_medium_seconds: int = Field(default=14400, ge=1)
    alert_repeat_low_seconds: int = Field(default=86400, ge=1)
    alert_daily_summary_hour_utc: int = Field(default=8, ge=0, le=23)
    # The strategy's "failed logins spike": more than this many failures in one minute.
    alert_failed_logins_per_minute: int = Field(default=10, ge=1)

    @field_validator("alert_webhook_urls", "alert_email_recipients", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator("audit_retention_days")
    @classmethod
    def _audit_retention_at_least_six_years(cls, value: int) -> int:
        if value < AUDIT_MIN_RETENTION_DAYS:
            raise ValueError(
                f"audit_retention_days must be at least {AUDIT_MIN_RETENTION_DAYS} (six years)"
            )
        return value

    @field_validator("audit_checkpoint_url")
    @classmethod
    def _audit_checkpoint_url_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("file:///", "s3://")):
            raise ValueError("audit_checkpoint_url must be file:///path or s3://bucket/prefix")
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def is_development(self) -> bool:
        return self.env is Environment.DEVELOPMENT

    @property
    def audit_checkpoint_path(self) -> Path:
        return self.audit_checkpoint_dir or self.var_dir / "audit-checkpoints"

    @property
    def audit_archive_path(self) -> Path:
        return self.audit_archive_dir or self.var_dir / "audit-archive"

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def production_problems(self) -> list[str]:
        """Every reason this configuration is unfit for production (empty when fit)."""
        problems: list[str] = []
        if self.uses_sqlite:
            problems.append("AAYU_DATABASE_URL is a SQLite file; production needs PostgreSQL")
        if not self.redis_url:
            problems.append(
                "AAYU_REDIS_URL is unset; limits, lockouts and nonces must be shared through Redis"
            )
        if not self.smtp_url:
            problems.append("AAYU_SMTP_URL is unset; the local outbox does not deliver email")
        if self.payment_provider is PaymentProvider.LOCAL:
            problems.append("AAYU_PAYMENT_PROVIDER=local simulates payments; use stripe")
        if self.payment_provider is PaymentProvider.STRIPE:
            if not self.stripe_api_key:
                problems.append("AAYU_STRIPE_API_KEY is unset")
            if not self.stripe_webhook_secret:
                problems.append("AAYU_STRIPE_WEBHOOK_SECRET is unset")
        if self.secrets_provider is SecretsProvider.ENV:
            problems.append("AAYU_SECRETS_PROVIDER=env is for development only")
        if self.secrets_provider is SecretsProvider.VAULT and not (
            self.vault_url and self.vault_url.startswith("https://")
        ):
            problems.append("AAYU_VAULT_URL must be an https:// URL with the vault provider")
        if self.secrets_provider is SecretsProvider.AZURE and not (
            self.azure_key_vault_url and self.azure_key_vault_url.startswith("https://")
        ):
            problems.append(
                "AAYU_AZURE_KEY_VAULT_URL must be an https:// URL with the azure provider"
            )
        if self.key_activation_delay_seconds <= self.keyring_refresh_seconds:
            problems.append(
                "AAYU_KEY_ACTIVATION_DELAY_SECONDS must exceed AAYU_KEYRING_REFRESH_SECONDS, "
                "or other instances meet keys they have not loaded yet"
            )
        if self.secrets_provider is SecretsProvider.FILE and _is_generated_dev_dir(
            self.secrets_dir, self.var_dir
        ):
            problems.append(
                "AAYU_SECRETS_DIR points at the generated development secrets; "
                "mount real secrets (e.g. /run/secrets) or use vault/azure"
            )
        if self.alert_webhook_urls and (
            not self.alert_webhook_secret or len(self.alert_webhook_secret) < 32
        ):
            problems.append(
                "AAYU_ALERT_WEBHOOK_SECRET must be at least 32 characters to sign alert webhooks"
            )
        if any(not url.startswith("https://") for url in self.alert_webhook_urls):
            problems.append("AAYU_ALERT_WEBHOOK_URLS must all be https:// URLs in production")
        if not self.metrics_token:
            problems.append("AAYU_METRICS_TOKEN is unset; /metrics would be public")
        elif len(self.metrics_token) < 32:
            problems.append("AAYU_METRICS_TOKEN is shorter than 32 characters")
        if self.captcha_provider is not CaptchaProvider.ALTCHA and not self.captcha_secret:
            problems.append(f"AAYU_CAPTCHA_SECRET is unset for {self.captcha_provider.value}")
        if not self.public_url.startswith("https://"):
            problems.append("AAYU_PUBLIC_URL must be an https:// URL in production")
        return problems

    def check_production(self) -> None:
        if self.is_production:
            problems = self.production_problems()
            if problems:
                raise InsecureConfiguration(problems)


def _is_generated_dev_dir(secrets_dir: Path, var_dir: Path) -> bool:
    try:
        return secrets_dir.resolve().is_relative_to(var_dir.resolve())
    except OSError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
