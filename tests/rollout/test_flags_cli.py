"""``flags list``, ``flags set`` and ``rollback`` as an operator runs them (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.incident import Incident
from tests.fixtures.database import make_settings
from tests.fixtures.services import silent_redis


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AAYU_LOG_LEVEL": "WARNING"}
    full_env.update(env)
    result = subprocess.run(
        [sys.executable, "-m", "aayu_accounts", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def cli_env(settings: Settings, url: str, tmp_path: Path) -> dict[str, str]:
    env = {
        "AAYU_ENV": "test",
        "AAYU_DATABASE_URL": url,
        "AAYU_VAR_DIR": str(tmp_path / "var"),
        "AAYU_SECRETS_DIR": str(tmp_path / "var" / "secrets"),
        "AAYU_INCIDENT_DIR": str(tmp_path / "incidents"),
    }
    if settings.redis_url:
        env.update(AAYU_REDIS_URL=settings.redis_url, AAYU_REDIS_PREFIX=settings.redis_prefix)
    return env


@pytest.mark.committing
async def test_flags_set_list_and_rollback(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    env = cli_env(settings, fresh_database_url, tmp_path)
    changed = json.loads(
        run_cli(
            "flags", "set", "NEW_AUTH", "--on", "--percent", "25", "--json", env=env, cwd=tmp_path
        ).stdout
    )
    assert changed["enabled"] is True
    assert changed["rollout_percent"] == 25

    listed = json.loads(run_cli("flags", "list", "--json", env=env, cwd=tmp_path).stdout)
    by_key = {f["key"]: f for f in listed}
    assert {"NEW_AUTH", "NEW_DATABASE", "BILLING", "SHADOW_WRITES", "FALLBACK"} <= set(by_key)
    assert by_key["NEW_AUTH"]["rollout_percent"] == 25
    human = run_cli("flags", "list", env=env, cwd=tmp_path).stdout
    assert "NEW_AUTH" in human
    assert "25 %" in human

    planned = json.loads(
        run_cli("flags", "plan", "--day-zero", "2030-01-01", "--json", env=env, cwd=tmp_path).stdout
    )
    steps = {f["key"]: [s["rollout_percent"] for s in f["schedule"]] for f in planned}
    assert steps == {"NEW_AUTH": [10, 25, 50, 100], "NEW_DATABASE": [25, 50, 100], "BILLING": [100]}
    assert planned[0]["schedule"][0]["run_at"].startswith("2030-01-16")

    result = json.loads(run_cli("rollback", "--json", env=env, cwd=tmp_path).stdout)
    assert result["flags"]["NEW_AUTH"]["enabled"] is False
    assert result["flags"]["FALLBACK"] == {"enabled": True, "rollout_percent": 100}
    report = Path(result["report"]).read_text()  # noqa: ASYNC240 - a test reading its output
    assert "| NEW_AUTH | on 25 % | off 25 % |" in report
    # The rollback voided the plan: yesterday's schedule will not turn the flags back on.
    after = json.loads(run_cli("flags", "list", "--json", env=env, cwd=tmp_path).stdout)
    new_path = ("NEW_AUTH", "NEW_DATABASE", "BILLING")
    outcomes = {
        f["key"]: {s["outcome"] for s in f["schedule"]} for f in after if f["key"] in new_path
    }
    assert outcomes == {key: {"cancelled: rollback"} for key in new_path}

    database = Database(create_engine(make_settings(fresh_database_url, tmp_path)))
    try:
        async with database.session_scope(write=False) as session:
            incident = await session.get(Incident, result["incident_id"])
            assert incident is not None
            kind, actor = incident.kind, incident.actor
            rollbacks = (
                await session.scalars(
                    select(AuditEvent).where(
                        AuditEvent.action == AuditAction.ROLLBACK_EXECUTED.value
                    )
                )
            ).all()
            rollback_actors = [event.actor_id for event in rollbacks]
    finally:
        await database.dispose()
    assert kind == "manual"
    assert actor.startswith("system:cli:")
    assert rollback_actors == [actor.removeprefix("system:")]


@pytest.mark.committing
async def test_rollback_and_flag_changes_finish_when_redis_does_not_answer(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    # The change commits first; announcing it on Redis is best effort (every instance polls
    # the version too). A Redis that never answers costs the operator's rollback the Redis
    # timeout; the change itself is never lost or refused for it.
    env = cli_env(settings, fresh_database_url, tmp_path)
    with silent_redis() as url:
        env.update(
            AAYU_REDIS_URL=url, AAYU_REDIS_PREFIX="silent:", AAYU_REDIS_TIMEOUT_SECONDS="0.5"
        )
        started = time.monotonic()
        run_cli(
            "flags", "set", "NEW_AUTH", "--on", "--percent", "10", env=env, cwd=tmp_path, timeout=45
        )
        result = json.loads(run_cli("rollback", "--json", env=env, cwd=tmp_path, timeout=45).stdout)
        took = time.monotonic() - started
        purge = run_cli("cache", "purge", env=env, cwd=tmp_path, check=False, timeout=45)
    assert result["flags"]["NEW_AUTH"]["enabled"] is False
    assert result["flags"]["FALLBACK"] == {"enabled": True, "rollout_percent": 100}
    assert took < 40  # two interpreter start-ups and two half-second timeouts, under load
    # Purging is the whole point of `cache purge`: it fails, with one line saying why.
    assert purge.returncode != 0
    assert len(purge.stderr.strip().splitlines()) == 1, purge.stderr
    assert "Timeout" in purge.stderr or "timed out" in purge.stderr.lower(), purge.stderr


@pytest.mark.committing
async def test_flags_set_refuses_unknown_flag_and_empty_change(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    env = cli_env(settings, fresh_database_url, tmp_path)
    unknown = run_cli("flags", "set", "NOPE", "--on", env=env, cwd=tmp_path, check=False)
    assert unknown.returncode == 1
    assert "there is no flag NOPE" in unknown.stderr
    empty = run_cli("flags", "set", "NEW_AUTH", env=env, cwd=tmp_path, check=False)
    assert empty.returncode == 1
    assert "nothing to change" in empty.stderr


@pytest.mark.committing
async def test_migrate_legacy_users_prints_the_migrated_share(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    env = cli_env(settings, fresh_database_url, tmp_path)
    env.update(AAYU_ARGON2_MEMORY_KIB="1024", AAYU_ARGON2_TIME_COST="1")
    source = tmp_path / "auth.json"
    source.write_text(
        json.dumps(
            {
                "users": [
                    {"username": "a", "password": "pw-a-123", "email": "a@clinic.example"},
                    {"username": "b", "password": "pw-b-123"},
                ]
            }
        )
    )
    first = run_cli("migrate", "legacy-users", str(source), env=env, cwd=tmp_path)
    assert "beta users migrated: 50% of 2" in first.stdout
    again = json.loads(
        run_cli("migrate", "legacy-users", str(source), "--json", env=env, cwd=tmp_path).stdout
    )
    assert again["already"] == 1
    assert again["migrated"] == 0
    missing = run_cli(
        "migrate", "legacy-users", str(tmp_path / "nope.json"), env=env, cwd=tmp_path, check=False
    )
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
