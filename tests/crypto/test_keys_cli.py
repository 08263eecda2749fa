"""``aayu-accounts keys ...`` end to end: a real process on a fresh SQLite database."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from aayu_accounts.cli import keys_cli
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import KeyPurpose
from aayu_accounts.crypto.keyring.reencrypt import pending, reencrypt_batch
from aayu_accounts.crypto.keyring.runtime import keyring_scope
from aayu_accounts.db import Database
from aayu_accounts.kit import resilience
from aayu_accounts.models import Base
from aayu_accounts.models.user import User

CLI = [sys.executable, "-m", "aayu_accounts"]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AAYU_")}
    env.update(
        AAYU_ENV="development",
        AAYU_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        AAYU_VAR_DIR=str(tmp_path),
        AAYU_SECRETS_DIR=str(tmp_path / "secrets"),
        AAYU_LOG_LEVEL="WARNING",
    )
    return env


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def audit_actions(database: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = connection.execute(
            "SELECT action, target_id FROM audit_events ORDER BY sequence"
        ).fetchall()
    return [(str(a), str(t)) for a, t in rows]


def test_list_rotate_retire_reencrypt(cli_env: dict[str, str], tmp_path: Path) -> None:
    run(cli_env, "db", "upgrade")
    listed = json.loads(run(cli_env, "keys", "list", "--json").stdout)
    names = {(item["name"], item["version"]) for item in listed}
    assert ("data", "1") in names
    assert ("master", "1") in names
    assert len(names) == 9  # every key purpose (audit-signing included) and the master key

    rotated = run(cli_env, "keys", "rotate", "data", "--activate-in", "0")
    assert "version 2" in rotated.stderr
    refused = run(cli_env, "keys", "retire", "data", "2", ok=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error:")
    assert "current" in refused.stderr

    reencrypted = run(cli_env, "keys", "reencrypt", "--batch-size", "10")
    assert "re-encrypted" in reencrypted.stderr
    run(cli_env, "keys", "retire", "data", "1")
    listed = json.loads(run(cli_env, "keys", "list", "--json").stdout)
    states = {(item["name"], item["version"]): item for item in listed}
    assert states[("data", "1")]["state"] == "retired"
    assert states[("data", "2")]["current"] is True

    unknown = run(cli_env, "keys", "rotate", "nonsense", ok=False)
    assert unknown.returncode == 1

    assert "version 2" in run(cli_env, "keys", "rotate", "master").stderr
    assert (tmp_path / "secrets" / "master-key.v2").exists()

    actions = audit_actions(tmp_path / "cli.db")
    assert ("crypto:key:rotated", "master") in actions
    assert ("crypto:key:rotated", "data") in actions
    assert ("crypto:key:retired", "data") in actions
    assert ("crypto:data:reencrypted", "data") in actions
    # No key material in any output or audit row.
    for path in (tmp_path / "secrets").glob("master-key*"):
        secret = path.read_text().strip()
        assert secret not in reencrypted.stderr
        with contextlib.closing(sqlite3.connect(tmp_path / "cli.db")) as connection:
            details = connection.execute("SELECT details FROM audit_events").fetchall()
        assert secret not in repr(details)


def _local_settings(env: dict[str, str]) -> Settings:
    """The settings the CLI process reads from ``env``, for writing rows from this process."""
    return Settings.model_validate(
        {
            "env": "development",
            "database_url": env["AAYU_DATABASE_URL"],
            "var_dir": Path(env["AAYU_VAR_DIR"]),
            "secrets_dir": Path(env["AAYU_SECRETS_DIR"]),
        }
    )


PEOPLE = [
    (f"cli.person{n}@clinic-example.org", f"Cli Person{n}", f"TOTPSECRET{n:04d}") for n in range(5)
]


async def test_retire_refused_while_data_uses_it_and_reencrypt_resumes_with_a_bar(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    run(cli_env, "db", "upgrade")
    local = _local_settings(cli_env)
    db = Database.from_settings(local)
    try:
        async with keyring_scope(local, db), db.session_scope() as session:
            for email, name, totp in PEOPLE:
                session.add(
                    User(email=email, full_name=name, totp_secret=totp, password_hash="x" * 20)
                )
        for name in ("data", "blind-index"):
            assert "version 2" in run(cli_env, "keys", "rotate", name, "--activate-in", "0").stderr

        # Rows still use version 1: retirement is refused, the key stays.
        for name in ("data", "blind-index"):
            refused = run(cli_env, "keys", "retire", name, "1", ok=False)
            assert refused.returncode == 1
            assert "stored values still use" in refused.stderr
            assert "reencrypt" in refused.stderr
        listed = json.loads(run(cli_env, "keys", "list", "--json").stdout)
        usage = {(i["name"], i["version"]): i for i in listed}
        assert usage[("data", "1")]["state"] == "active"
        assert usage[("data", "1")]["rows"] == 3 * len(PEOPLE)  # email, name, TOTP secret
        assert usage[("blind-index", "1")]["rows"] == len(PEOPLE)

        # An interrupted run (one batch of two users' emails committed), then the CLI
        # continues with what is left, showing its progress bar.
        async with keyring_scope(local, db) as runtime:
            async with db.session_scope() as session:
                first, _ = await reencrypt_batch(
                    session, runtime.keyring, User.email.spec, after=None, limit=2
                )
            assert first == 2
            async with db.session_scope(write=False) as session:
                todo = await pending(session, runtime.keyring, Base.metadata)
                left = sum(p.pending for p in todo)
        assert 0 < left < 3 * len(PEOPLE)
        resumed = run(
            {**cli_env, "TTY_COMPATIBLE": "1", "COLUMNS": "120"},
            "keys",
            "reencrypt",
            "--batch-size",
            "2",
        )
        assert "re-encrypting" in resumed.stderr
        assert f"{left}/{left}" in resumed.stderr  # the bar counted only what was left
        assert f"re-encrypted {left} values" in resumed.stderr

        for name in ("data", "blind-index"):
            run(cli_env, "keys", "retire", name, "1")
        listed = json.loads(run(cli_env, "keys", "list", "--json").stdout)
        usage = {(i["name"], i["version"]): i for i in listed}
        assert usage[("data", "1")]["state"] == "retired"
        assert usage[("data", "2")]["rows"] == 3 * len(PEOPLE)

        # A fresh keyring (version 1 destroyed) reads every row back and finds it by address.
        async with keyring_scope(local, db) as runtime:
            assert [k.version for k in runtime.keyring.versions(KeyPurpose.DATA)] == [2]
            async with db.session_scope(write=False) as session:
                for email, name, totp in PEOPLE:
                    user = await session.scalar(
                        select(User).where(User.email.matches(email.upper()))
                    )
                    assert user is not None
                    assert (user.email, user.full_name, user.totp_secret) == (email, name, totp)
    finally:
        await db.dispose()

    actions = audit_actions(tmp_path / "cli.db")
    for name in ("data", "blind-index"):
        assert ("crypto:key:rotated", name) in actions
        assert ("crypto:key:retired", name) in actions
    with contextlib.closing(sqlite3.connect(tmp_path / "cli.db")) as connection:
        details = [
            json.loads(row[0])
            for row in connection.execute(
                "SELECT details FROM audit_events WHERE action = 'crypto:key:rotated'"
            )
        ]
    assert {d["version"] for d in details} == {2}


def test_commands_apply_the_secret_store_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured = Settings.model_validate(
        {
            "env": "development",
            "var_dir": tmp_path,
            "secret_store_timeout_seconds": 2.5,
            "secret_store_retries": 0,
            "secret_store_breaker_failures": 2,
        }
    )
    monkeypatch.setattr(keys_cli, "settings", lambda: configured)
    assert keys_cli._settings() is configured
    policy = resilience.dependency(resilience.SECRET_STORE).policy
    assert (policy.timeout_seconds, policy.attempts, policy.breaker_fail_max) == (2.5, 1, 2)
