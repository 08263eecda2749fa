"""The command line: both entry points, JSON output, one-line failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AAYU_LOG_LEVEL": "WARNING"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "aayu_accounts", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_console_script_and_module_both_work(tmp_path: Path) -> None:
    listed = run_cli("--help", cwd=tmp_path).stdout
    for command in ("serve", "worker", "db"):
        assert command in listed
    script = shutil.which("aayu-accounts", path=str(Path(sys.executable).parent))
    assert script is not None
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "db" in result.stdout


def test_db_upgrade_then_current_json(tmp_path: Path) -> None:
    env = {"AAYU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db"}
    upgraded = run_cli("db", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    current = run_cli("db", "current", "--json", cwd=tmp_path, env=env)
    assert current.returncode == 0
    record = json.loads(current.stdout)  # stdout holds the JSON and nothing else
    assert record["up_to_date"] is True
    # Down one revision, then to the start; `current` follows each step.
    first = "0001_foundation"
    downgraded = run_cli("db", "downgrade", first, cwd=tmp_path, env=env)
    assert downgraded.returncode == 0, downgraded.stderr
    record = json.loads(run_cli("db", "current", "--json", cwd=tmp_path, env=env).stdout)
    assert record["current"] == first
    assert record["up_to_date"] is False
    downgraded = run_cli("db", "downgrade", "base", cwd=tmp_path, env=env)
    assert downgraded.returncode == 0, downgraded.stderr
    assert (
        json.loads(run_cli("db", "current", "--json", cwd=tmp_path, env=env).stdout)["current"]
        is None
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("db", "upgrade"), {"AAYU_DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}),
        (("db", "downgrade", "no-such-revision"), {}),
    ],
)
def test_failures_exit_non_zero_with_one_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    env = {"AAYU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/f.db", **env}
    result = run_cli(*args, cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error:")
