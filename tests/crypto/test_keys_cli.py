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

    actions = audit_actions(tmp_path / "cli.db")
    assert ("crypto:key:rotated", "data") in actions
    assert ("crypto:key:retired", "data") in actions
    assert ("crypto:data:reencrypted", "data") in actions
    # No key material in any output or audit row.
    secret = (tmp_path / "secrets" / "master-key").read_text().strip()
    assert secret not in reencrypted.stderr
