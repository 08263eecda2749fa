"""CI: a missing PostgreSQL or Redis fails the run under AAYU_REQUIRE_SERVICES=1 (and only skips
without it), the run reports how many tests passed on each backend, and ``.ci/run`` runs the
README's ``make test`` with AAYU_REQUIRE_SERVICES=1.

The suite is run here on itself: one small test of it, in a child pytest, with the services
pointed at a closed port.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.services import PG_ADMIN_URL, postgres_available, redis_available, require

ROOT = Path(__file__).resolve().parents[1]
# A test that asks for the database fixtures, so it runs once per backend.
ONE_TEST = "tests/test_health.py::test_health_answers_without_dependencies"
CLOSED_PORT_PG = "postgresql+asyncpg://postgres@127.0.0.1:1/test"
CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


def run_suite(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "AAYU_REQUIRE_SERVICES"}
    full_env.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            ONE_TEST,
            "-p",
            "no:cacheprovider",
            "-rA",
            f"--basetemp={tmp_path / 'inner'}",
        ],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def test_a_missing_postgresql_fails_the_run_when_services_are_required(tmp_path: Path) -> None:
    result = run_suite(tmp_path, AAYU_REQUIRE_SERVICES="1", AAYU_TEST_DATABASE_URL=CLOSED_PORT_PG)
    assert result.returncode == 1, result.stdout
    assert "PostgreSQL is not answering and AAYU_REQUIRE_SERVICES=1" in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 passed, 1 error" in summary, "the PostgreSQL run errors in its set-up"
    assert "skipped" not in summary
    assert "tests passed per backend: sqlite=1, postgresql=0, no database=0" in result.stdout


def test_a_missing_postgresql_only_skips_without_the_requirement(tmp_path: Path) -> None:
    result = run_suite(tmp_path, AAYU_TEST_DATABASE_URL=CLOSED_PORT_PG)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped" in result.stdout
    assert "PostgreSQL is not answering" in result.stdout


def test_a_missing_redis_fails_the_postgresql_run_when_services_are_required(
    tmp_path: Path,
) -> None:
    require("PostgreSQL", postgres_available())
    result = run_suite(
        tmp_path,
        AAYU_REQUIRE_SERVICES="1",
        AAYU_TEST_DATABASE_URL=PG_ADMIN_URL,
        AAYU_TEST_REDIS_URL=CLOSED_PORT_REDIS,
    )
    assert result.returncode == 1, result.stdout
    assert "Redis is not answering and AAYU_REQUIRE_SERVICES=1" in result.stdout
    assert "skipped" not in result.stdout.strip().splitlines()[-1]
    assert "tests passed per backend: sqlite=1, postgresql=0, no database=0" in result.stdout


def test_the_run_reports_the_tests_passed_on_each_backend(tmp_path: Path) -> None:
    require("PostgreSQL", postgres_available())
    require("Redis", redis_available())
    result = run_suite(tmp_path, AAYU_REQUIRE_SERVICES="1")
    assert result.returncode == 0, result.stdout
    assert "tests passed per backend: sqlite=1, postgresql=1, no database=0" in result.stdout


def test_ci_runs_make_test_with_services_required(tmp_path: Path) -> None:
    # With both services answering .ci/run starts nothing; stand-ins for `make` (records how
    # it was called) and `nginx` (present, so nothing is installed) keep the rest real.
    require("PostgreSQL", postgres_available())
    require("Redis", redis_available())
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "make-calls"
    (stubs / "make").write_text(
        f'#!/bin/sh\necho "$PWD|$*|${{AAYU_REQUIRE_SERVICES:-unset}}" >> "{calls}"\n'
    )
    (stubs / "nginx").write_text("#!/bin/sh\nexit 0\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "AAYU_REQUIRE_SERVICES"}
    env["PATH"] = f"{stubs}:{env.get('PATH', '/usr/bin:/bin')}"
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "starting" not in result.stdout, "services that answer are not started again"
    assert calls.read_text().splitlines() == [f"{ROOT}|test|1"]


@pytest.mark.parametrize("target", ["run", "test"])
def test_the_readme_commands_are_make_targets(target: str) -> None:
    # `make -n` prints what the target would run, without running it (and without the
    # flags of a `make test` this suite may be running under).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        ["make", "-n", target],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    steps = result.stdout
    if target == "run":
        for step in ("aayu-accounts db upgrade", "aayu-accounts demo init", "--port 8000"):
            assert step in steps
    else:
        for step in ("ruff check", "ruff format --check", "mypy", "pytest"):
            assert step in steps
