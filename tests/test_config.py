"""Configuration: development defaults work; production refuses every insecure default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aayu_accounts.app import create_app
from aayu_accounts.config import InsecureConfiguration, Settings


def test_embedded_defaults_need_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("AAYU_")]:
        monkeypatch.delenv(name)
    settings = Settings()
    # API.md's configuration table, default by default.
    assert settings.is_development
    assert settings.database_url == "sqlite+aiosqlite:///./var/aayu.db"
    assert settings.redis_url is None
    assert settings.smtp_url is None
    assert settings.payment_provider.value == "local"
    assert settings.secrets_provider.value == "file"
    assert settings.secrets_dir == Path("./var/secrets")
    assert settings.metrics_token is None
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.legacy_auth_file is None
    assert settings.legacy_store_dir == Path("./var/legacy-store")
    assert settings.trusted_proxies == []
    settings.check_production()  # not production: nothing to refuse


def test_production_refuses_embedded_defaults_naming_each_problem() -> None:
    settings = Settings(env="production")
    with pytest.raises(InsecureConfiguration) as refused:
        settings.check_production()
    message = str(refused.value)
    for variable in (
        "AAYU_DATABASE_URL",
        "AAYU_REDIS_URL",
        "AAYU_SMTP_URL",
        "AAYU_PAYMENT_PROVIDER",
        "AAYU_SECRETS_DIR",
        "AAYU_METRICS_TOKEN",
        "AAYU_PUBLIC_URL",
    ):
        assert variable in message
    assert len(refused.value.problems) >= 7


def test_production_refuses_env_secrets_and_missing_stripe_keys() -> None:
    settings = Settings(env="production", secrets_provider="env", payment_provider="stripe")
    problems = " ".join(settings.production_problems())
    assert "AAYU_SECRETS_PROVIDER=env" in problems
    assert "AAYU_STRIPE_API_KEY" in problems
    assert "AAYU_STRIPE_WEBHOOK_SECRET" in problems


def test_a_fit_production_configuration_starts(tmp_path: Path) -> None:
    settings = Settings(
        env="production",
        database_url="postgresql+asyncpg://aayu@db/aayu",
        redis_url="redis://cache:6379/0",
        smtp_url="smtp://mail:25",
        payment_provider="stripe",
        stripe_api_key="sk_live_x",
        stripe_webhook_secret="whsec_x",
        secrets_provider="file",
        secrets_dir=tmp_path / "run-secrets",
        metrics_token="m" * 40,
        public_url="https://accounts.aayuwell.com",
    )
    assert settings.production_problems() == []
    create_app(settings)  # builds without refusing


FIT_PRODUCTION: dict[str, object] = {
    "env": "production",
    "database_url": "postgresql+asyncpg://aayu@db/aayu",
    "redis_url": "redis://cache:6379/0",
    "smtp_url": "smtp://mail:25",
    "payment_provider": "stripe",
    "stripe_api_key": "sk_live_x",
    "stripe_webhook_secret": "whsec_x",
    "secrets_provider": "vault",
    "vault_url": "https://vault.internal:8200",
    "metrics_token": "m" * 40,
    "public_url": "https://accounts.aayuwell.com",
}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"database_url": "sqlite+aiosqlite:///./var/aayu.db"}, "AAYU_DATABASE_URL"),
        ({"redis_url": None}, "AAYU_REDIS_URL"),
        ({"smtp_url": None}, "AAYU_SMTP_URL"),
        ({"payment_provider": "local"}, "AAYU_PAYMENT_PROVIDER"),
        ({"stripe_api_key": None}, "AAYU_STRIPE_API_KEY"),
        ({"stripe_webhook_secret": None}, "AAYU_STRIPE_WEBHOOK_SECRET"),
        ({"secrets_provider": "env"}, "AAYU_SECRETS_PROVIDER=env"),
        ({"secrets_provider": "file", "secrets_dir": "./var/secrets"}, "AAYU_SECRETS_DIR"),
        ({"vault_url": "http://vault.internal:8200"}, "AAYU_VAULT_URL"),
        (
            {"secrets_provider": "azure", "azure_key_vault_url": None},
            "AAYU_AZURE_KEY_VAULT_URL",
        ),
        ({"metrics_token": None}, "AAYU_METRICS_TOKEN"),
        ({"metrics_token": "short"}, "AAYU_METRICS_TOKEN"),
        ({"public_url": "http://accounts.aayuwell.com"}, "AAYU_PUBLIC_URL"),
        ({"key_activation_delay_seconds": 10.0}, "AAYU_KEY_ACTIVATION_DELAY_SECONDS"),
        ({"captcha_provider": "turnstile"}, "AAYU_CAPTCHA_SECRET"),
        ({"alert_webhook_urls": "http://hooks.example/a"}, "AAYU_ALERT_WEBHOOK_URLS"),
    ],
)
def test_each_insecure_setting_alone_is_refused_by_name(
    change: dict[str, object], named: str
) -> None:
    assert Settings.model_validate(FIT_PRODUCTION).production_problems() == []
    problems = Settings.model_validate({**FIT_PRODUCTION, **change}).production_problems()
    assert problems, change
    assert any(named in problem for problem in problems), problems


def test_app_refuses_to_start_in_production_with_defaults() -> None:
    with pytest.raises(InsecureConfiguration):
        create_app(Settings(env="production"))


def test_cli_refuses_production_defaults_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aayu_accounts", "db", "current"],
        capture_output=True,
        text=True,
        env={"AAYU_ENV": "production", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: refusing to start in production")


def test_trusted_proxies_parse_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAYU_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    assert Settings().trusted_proxies == ["10.0.0.0/8", "192.168.1.1"]
    monkeypatch.setenv("AAYU_TRUSTED_PROXIES", "not-a-network")
    with pytest.raises(ValueError, match="not-a-network"):
        Settings()


# Fields whose names look sensitive but hold public values: addresses of services (no
# credentials in them), a public site key, an access key's id.
_SHOWN = {
    "public_url",
    "stripe_api_base",
    "vault_url",
    "azure_key_vault_url",
    "captcha_site_key",
    "captcha_verify_url",
    "audit_checkpoint_url",
    "audit_s3_endpoint_url",
    "audit_s3_access_key_id",
    "audit_s3_region",
    "redis_prefix",
    "secrets_provider",
    "secrets_dir",
    "secret_store_timeout_seconds",
    "secret_store_retries",
    "secret_store_breaker_failures",
    "secret_store_breaker_reset_seconds",
    "secret_cache_ttl_seconds",
    "secret_stale_seconds",
    "key_activation_delay_seconds",
    "keyring_refresh_seconds",
    "password_min_length",
    "password_min_strength",
    "password_reset_minutes",
    "breached_passwords_file",
    "redis_timeout_seconds",
    "redis_health_check_seconds",
    "redis_breaker_reset_seconds",
}
_SENSITIVE = ("secret", "token", "key", "password", "url")


def test_no_credential_appears_in_the_settings_repr() -> None:
    sensitive = [
        name
        for name in Settings.model_fields
        if any(word in name for word in _SENSITIVE) and name not in _SHOWN
    ]
    # Every such field is given a distinctive value; none may show in repr or str.
    values: dict[str, object] = {}
    for name in sensitive:
        marker = f"hidden-{name}-value"
        if name == "alert_webhook_urls":
            values[name] = [f"https://hooks.example/{marker}"]
        elif name.endswith("_url"):
            values[name] = f"scheme://user:{marker}@host/x"
        else:
            values[name] = marker
    values["database_url"] = "postgresql+asyncpg://aayu:hidden-database_url-value@db/aayu"
    values["redis_url"] = "redis://:hidden-redis_url-value@cache:6379/0"
    values["smtp_url"] = "smtp://mail:hidden-smtp_url-value@mail:587"
    settings = Settings.model_validate({"env": "test", **values})
    shown = repr(settings) + str(settings)
    assert {"database_url", "redis_url", "smtp_url", "stripe_api_key"} <= set(sensitive)
    assert [name for name in sensitive if f"hidden-{name}-value" in shown] == []
    # The values themselves are intact.
    assert settings.stripe_api_key == "hidden-stripe_api_key-value"
