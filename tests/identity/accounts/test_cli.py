"""``admin create`` and ``demo init`` through the real command line (SQLite file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from aayu_accounts.identity.schemas import LoginIn


def run_cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AAYU_LOG_LEVEL": "WARNING",
        "AAYU_DATABASE_URL": f"sqlite+aiosqlite:///{cwd}/cli.db",
        "AAYU_VAR_DIR": str(cwd / "var"),
        "AAYU_SECRETS_DIR": str(cwd / "var" / "secrets"),
        # Cheap hashing for the test; the parameters themselves are tested elsewhere.
        "AAYU_ARGON2_MEMORY_KIB": "1024",
        "AAYU_ARGON2_TIME_COST": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "aayu_accounts", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        input=stdin,
        timeout=120,
        check=False,
    )


def test_admin_create_and_demo_init(tmp_path: Path) -> None:
    # One test, few processes: each start of the command line costs seconds.
    assert run_cli("db", "upgrade", cwd=tmp_path).returncode == 0
    password = "Granite-orchard-lantern-58"
    created = run_cli(
        "admin",
        "create",
        "--email",
        "ops@clinic-example.org",
        "--password-stdin",
        "--json",
        cwd=tmp_path,
        stdin=password + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["platform_admin"] is True
    assert password not in created.stdout + created.stderr

    weak = run_cli(
        "admin",
        "create",
        "--email",
        "ops@clinic-example.org",
        "--password-stdin",
        cwd=tmp_path,
        stdin="short\n",
    )
    assert weak.returncode == 1
    assert weak.stderr.strip().count("\n") == 0  # one line
    assert "already exists" in weak.stderr

    first = run_cli("demo", "init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "owner@demo.aayuwell.com" in first.stdout
    assert "admin@demo.aayuwell.com" in first.stdout
    assert first.stdout.count("password:") == 2
    # The printed credentials are accepted by the sign-in schema (a reserved domain such as
    # .local is not, and a newcomer could not sign in with them).
    for line in first.stdout.splitlines():
        if "password:" in line:
            email = line.split(":", 1)[1].split()[0]
            password = line.rsplit("password:", 1)[1].strip()
            LoginIn(email=email, password=password)
    second = run_cli("demo", "init", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "demo data exists" in second.stdout
    assert "password:" not in second.stdout
