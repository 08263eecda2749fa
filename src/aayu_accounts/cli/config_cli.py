"""``aayu-accounts config docs|check``: the configuration reference and a production check."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer
from pydantic_settings import BaseSettings

from aayu_accounts.api_security.settings import ApiSecuritySettings
from aayu_accounts.config import Settings
from aayu_accounts.rollout.settings import RolloutSettings

app = typer.Typer(help="Configuration reference and checks.", no_args_is_help=True)

SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (Settings, ApiSecuritySettings, RolloutSettings)

# What each family of settings is about; a setting with its own description uses that.
GROUPS: dict[str, str] = {
    "env": "`development`, `test` or `production` (production refuses insecure settings)",
    "database_url": "`postgresql+asyncpg://…` for PostgreSQL",
    "redis_url": "shared limits, lockouts, nonces, flag pub/sub (unset: in-process)",
    "redis_prefix": "prefix of every Redis key",
    "redis_": "Redis client timeouts, health check and breaker",
    "smtp_url": "`smtp://host:port` (unset: the local outbox)",
    "smtp_": "email sender and SMTP timeout",
    "payment_provider": "`local` (simulated) or `stripe`",
    "stripe_api_base": "base URL of a local Stripe stand-in",
    "stripe_": "Stripe credentials",
    "billing_": "billing: dunning grace days, plan catalogue file",
    "entitlement_": "how long an entitlement decision is cached",
    "secrets_provider": "`env` (development only), `file`, `vault`, `azure`",
    "secrets_dir": "the `file` provider's directory (generated in development)",
    "vault_": "HashiCorp Vault KV v2 provider",
    "azure_": "Azure Key Vault provider",
    "secret_": "secret store timeouts, retries, breaker and cache",
    "keyring_": "how often each process reloads the keyring",
    "key_activation": "a new key version signs/encrypts only after this delay",
    "metrics_token": "bearer token for `/metrics` (required outside development)",
    "public_url": "base of links in emails",
    "legacy_auth_file": 'the v2.5 credential list, JSON `{"users": [...]}`',
    "legacy_store_dir": "the legacy (v2.5 LocalStorage) document store",
    "trusted_proxies": "comma-separated CIDRs whose `X-Forwarded-For` is believed",
    "var_dir": "where embedded-mode state lives",
    "db_": "database pool, timeouts, slow-statement log, health check and breaker",
    "sqlite_": "SQLite busy timeout",
    "log_": "structured JSON logs on stderr",
    "max_body": "larger request bodies get 413",
    "run_worker": "run jobs and leader duties inside `serve`",
    "job_": "background job worker",
    "leader_": "leader lease (SQLite; PostgreSQL uses an advisory lock)",
    "audit_": "audit trail: checkpoints, retention (never below 6 years), archive, exports",
    "argon2_": "Argon2id cost (m KiB, t, p) and concurrent hashes",
    "password_": "password policy",
    "breached_": "offline breached-password list (HIBP SHA-1 format)",
    "login_": "sign-in throttling thresholds and windows",
    "mfa_": "MFA attempt limits and sign-in step lifetime",
    "captcha_": "CAPTCHA provider (`altcha`, `turnstile`, `hcaptcha`) and its keys",
    "altcha_": "ALTCHA proof-of-work parameters",
    "session_": "session idle timeout, absolute lifetime, touch and cache intervals",
    "email_verification": "verification link lifetime",
    "password_reset": "reset link lifetime",
    "invitation_": "invitation lifetime",
    "terms_version": "current terms of service version",
    "privacy_version": "current privacy policy version",
    "alert_": "alert channels (signed webhook, email, log), grouping and repeat intervals",
    "cors_": "origins allowed to call with credentials (empty: none)",
    "rate_limit": "API rate limits (`100/minute` per user or IP; per-route JSON overrides)",
    "service_client": "default per-client limit of signed service calls",
    "signature_": "accepted clock skew of signed requests",
    "client_": "service-client secret rotation grace and lookup cache",
    "hsts_": "Strict-Transport-Security max-age outside development",
    "flag_": "flag propagation: version poll, staleness bound, channel",
    "new_path": "timeout of the new path before FALLBACK serves the legacy one",
    "auto_rollback": "auto-rollback monitor: windows, minimum requests, thresholds, dry run",
    "incident_": "where incident reports are written",
}


def _describe(name: str, description: str | None) -> str:
    if description:
        return description
    for prefix in sorted(GROUPS, key=len, reverse=True):
        if name.startswith(prefix):
            return GROUPS[prefix]
    return ""


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        value = f"./{value}" if not value.is_absolute() else str(value)
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    seen: set[str] = set()
    for settings_class in SETTINGS_CLASSES:
        for name, field in settings_class.model_fields.items():
            if name in seen:
                continue
            seen.add(name)
            default = "none" if field.default_factory is not None else _default(field.default)
            if field.default_factory is not None:
                default = "empty"
            rows.append(
                f"| `AAYU_{name.upper()}` | {default} | {_describe(name, field.description)} |"
            )
    return "\n".join(rows) + "\n"


@app.command()
def docs() -> None:
    """Print every AAYU_* variable as a Markdown table (the README's configuration section)."""
    typer.echo(settings_table(), nl=False)


@app.command()
def check() -> None:
    """Exit non-zero, naming each problem, if this environment is unfit for production."""
    problems = Settings().production_problems()
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1)
    typer.echo("fit for production")
