"""Service clients: rotation with a grace period, disabling, per-client limits, names kept
exactly as given, secrets stored only encrypted, and the CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from structlog.testing import capture_logs

from aayu_accounts.api_security.service_client import service as client_service
from aayu_accounts.api_security.service_client.errors import (
    ClientNameTaken,
    InvalidClientName,
)
from aayu_accounts.audit.service import Actor
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.models.service_client import ServiceClient
from tests.api_security.conftest import SigningClient, create_client

FLAGS = "/api/v1/service/flags/evaluate"
ACTOR = Actor.system("test")

HOSTILE_NAMES = [
    "Robert'); DROP TABLE service_clients;--",
    "SELECT * FROM \"users\" WHERE 1=1 OR 'a'='a'",
    'Select Medical "Drop-in" Clinic; DELETE; UNION ALL -- /* */ %_\\',
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_names_full_of_sql_and_quotes_come_back_unchanged(
    db: Database, app: object, name: str
) -> None:
    issued = await create_client(db, name)
    async with db.session_scope(write=False) as session:
        views = await client_service.list_clients(session)
        stored = await session.scalar(
            select(ServiceClient.name).where(ServiceClient.key_id == issued.key_id)
        )
        tables = await session.execute(text("SELECT COUNT(*) FROM service_clients"))
    assert stored == name
    assert [v.name for v in views if v.key_id == issued.key_id] == [name]
    assert tables.scalar_one() >= 1  # the table is still there


async def test_names_are_refused_not_rewritten(db: Database, app: object) -> None:
    await create_client(db, "scribe")
    with pytest.raises(ClientNameTaken):
        await create_client(db, "scribe")
    for bad in ("", "   ", "x" * 201, "tab\there", "nul\x00"):
        with pytest.raises(InvalidClientName):
            await create_client(db, bad)


async def test_the_secret_is_stored_only_encrypted(db: Database, signer: SigningClient) -> None:
    async with db.session_scope(write=False) as session:
        raw = await session.execute(text("SELECT secret_ciphertext FROM service_client_secrets"))
        blobs = [bytes(row[0]) for row in raw]
        audit = (await session.execute(select(AuditEvent.details))).scalars().all()
    secret = signer.issued.secret
    assert blobs
    assert all(secret.encode() not in blob and bytes.fromhex(secret) not in blob for blob in blobs)
    assert all(secret not in json.dumps(details) for details in audit)


async def test_secrets_and_signatures_never_reach_the_logs(
    db: Database, signer: SigningClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        async with db.session_scope() as session:
            new = await client_service.rotate_client(
                session, name="scribe-backend", actor=ACTOR, grace_seconds=60
            )
        rotated = SigningClient(signer.http, new)
        assert (await rotated.post(FLAGS, {})).status_code == 200
        assert (await signer.post(FLAGS, {})).status_code == 200  # the old one, in grace
        body = b"{}"
        headers = {"Content-Type": "application/json", **rotated.headers("POST", FLAGS, body)}
        signed = headers["X-Aayu-Signature"]
        headers["X-Aayu-Signature"] = signed[::-1]
        refused = await signer.http.post(FLAGS, content=body, headers=headers)
        assert refused.json()["code"] == "signature_invalid"
    logged = repr(logs) + caplog.text
    for secret in (signer.issued.secret, new.secret, signed, signed[::-1]):
        assert secret not in logged


async def test_rotation_keeps_the_old_secret_for_the_grace_period_only(
    db: Database, signer: SigningClient, frozen_clock: FrozenClock
) -> None:
    async with db.session_scope() as session:
        new = await client_service.rotate_client(
            session, name="scribe-backend", actor=ACTOR, grace_seconds=60
        )
    assert new.key_id == signer.issued.key_id
    assert new.secret != signer.issued.secret
    rotated = SigningClient(signer.http, new)
    assert (await signer.post(FLAGS, {})).status_code == 200  # old, within grace
    assert (await rotated.post(FLAGS, {})).status_code == 200  # new
    frozen_clock.advance(61)
    refused = await signer.post(FLAGS, {})
    assert refused.status_code == 401
    assert refused.json()["code"] == "signature_invalid"
    assert (await rotated.post(FLAGS, {})).status_code == 200


async def test_a_second_rotation_never_extends_an_older_grace(
    db: Database, signer: SigningClient, frozen_clock: FrozenClock
) -> None:
    async with db.session_scope() as session:
        await client_service.rotate_client(
            session, name="scribe-backend", actor=ACTOR, grace_seconds=10
        )
        await client_service.rotate_client(
            session, name="scribe-backend", actor=ACTOR, grace_seconds=3600
        )
    frozen_clock.advance(11)
    assert (await signer.post(FLAGS, {})).json()["code"] == "signature_invalid"


async def test_a_disabled_client_is_an_unknown_key(
    db: Database, signer: SigningClient, app: FastAPI
) -> None:
    assert (await signer.post(FLAGS, {})).status_code == 200
    async with db.session_scope() as session:
        await client_service.disable_client(session, name="scribe-backend", actor=ACTOR)
    # This process cached the client for AAYU_CLIENT_CACHE_SECONDS; drop it instead of waiting.
    app.state.api_security.directory.forget()
    refused = await signer.post(FLAGS, {})
    assert refused.status_code == 401
    assert refused.json()["code"] == "signature_unknown_key"


async def test_management_is_audited(db: Database, signer: SigningClient) -> None:
    async with db.session_scope() as session:
        await client_service.rotate_client(
            session, name="scribe-backend", actor=ACTOR, grace_seconds=5
        )
        await client_service.disable_client(session, name="scribe-backend", actor=ACTOR)
    async with db.session_scope(write=False) as session:
        actions = (
            await session.scalars(
                select(AuditEvent.action).where(
                    AuditEvent.action.like("api_security:service_client:%")
                )
            )
        ).all()
    assert {
        "api_security:service_client:created",
        "api_security:service_client:rotated",
        "api_security:service_client:disabled",
    } <= set(actions)


async def test_each_client_has_its_own_per_second_limit(
    db: Database, client: httpx.AsyncClient
) -> None:
    slow = SigningClient(client, await create_client(db, "batch-job", rate_limit_per_second=2))
    fast = SigningClient(client, await create_client(db, "scribe"))
    statuses = [(await slow.post(FLAGS, {})).status_code for _ in range(4)]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses[2:]
    limited = await slow.post(FLAGS, {})
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert limited.headers["RateLimit-Limit"] == "2"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await fast.post(FLAGS, {})).status_code == 200  # another client is unaffected


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aayu_accounts", *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AAYU_LOG_LEVEL": "WARNING", **env},
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_cli_create_rotate_list_disable(tmp_path: Path) -> None:
    env = {"AAYU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db"}
    assert _cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    name = 'Scribe "backend"; DROP TABLE users;--'
    # At the most verbose log level the secret is on stdout, once, and in no log line.
    verbose = {**env, "AAYU_LOG_LEVEL": "DEBUG"}
    created = _cli("clients", "create", name, "--json", env=verbose, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    assert issued["secret"] not in created.stderr
    assert set(issued) == {"key_id", "secret"}
    assert len(issued["secret"]) == 64
    assert int(issued["secret"], 16) >= 0
    listed = json.loads(_cli("clients", "list", "--json", env=env, cwd=tmp_path).stdout)
    assert [c["name"] for c in listed] == [name]
    assert issued["secret"] not in json.dumps(listed)
    rotated = _cli("clients", "rotate", name, "--json", env=verbose, cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    new_secret = json.loads(rotated.stdout)["secret"]
    assert new_secret != issued["secret"]
    assert new_secret not in rotated.stderr
    assert issued["secret"] not in rotated.stderr
    assert (
        json.loads(_cli("clients", "list", "--json", env=env, cwd=tmp_path).stdout)[0][
            "live_secrets"
        ]
        == 2
    )
    assert _cli("clients", "disable", name, env=env, cwd=tmp_path).returncode == 0
    again = _cli("clients", "create", name, env=env, cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0
    assert "exists" in again.stderr
    missing = _cli("clients", "rotate", "nobody", env=env, cwd=tmp_path)
    assert missing.returncode == 1
    assert "nobody" in missing.stderr
