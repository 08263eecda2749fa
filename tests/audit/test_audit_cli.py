"""``aayu-accounts audit ...`` end to end, in a subprocess, on a SQLite file."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from aayu_accounts.db import Database, create_engine
from tests.audit.helpers import seed
from tests.fixtures.database import make_settings
from tests.test_cli import run_cli


async def _seed(url: str, var_dir: Path, count: int) -> None:
    engine = create_engine(make_settings(url, var_dir))
    try:
        await seed(Database(engine), count)
    finally:
        await engine.dispose()


async def test_verify_checkpoint_export_and_tamper(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    url = f"sqlite+aiosqlite:///{database}"
    env = {"AAYU_DATABASE_URL": url, "AAYU_VAR_DIR": str(tmp_path / "var")}
    assert run_cli("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    await _seed(url, tmp_path, 5)

    written = run_cli("audit", "checkpoint", "--json", cwd=tmp_path, env=env)
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout)["sequence"] == 5
    assert len(list((tmp_path / "var" / "audit-checkpoints").glob("checkpoint-*.json"))) == 1

    verified = run_cli("audit", "verify", "--json", cwd=tmp_path, env=env)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] is True
    assert report["checked"] == 6  # five events and the checkpoint's own
    assert report["checkpoints_checked"] == 1

    out = tmp_path / "export.csv"
    exported = run_cli(
        "audit",
        "export",
        "--org",
        "org-a",
        "--format",
        "csv",
        "-o",
        str(out),
        cwd=tmp_path,
        env=env,
    )
    assert exported.returncode == 0, exported.stderr
    with out.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 6  # five events and the export's own
    assert {row["org_id"] for row in rows} == {"org-a"}
    assert rows[-1]["action"] == "audit:events:exported"

    with sqlite3.connect(database) as plain:
        plain.execute("DROP TRIGGER audit_events_no_update")
        plain.execute("UPDATE audit_events SET actor_id = 'intruder' WHERE sequence = 2")
    broken = run_cli("audit", "verify", "--json", cwd=tmp_path, env=env)
    assert broken.returncode == 1
    problem = json.loads(broken.stdout)["problem"]
    assert (problem["kind"], problem["sequence"]) == ("modified", 2)
    human = run_cli("audit", "verify", cwd=tmp_path, env=env)
    assert human.returncode == 1
    assert "BROKEN at event 2: modified" in human.stderr
    later = run_cli("audit", "verify", "--from", "3", "--json", cwd=tmp_path, env=env)
    assert later.returncode == 0, later.stdout


@pytest.mark.timeout(240)  # six CLI processes; each pays the interpreter's start-up
async def test_public_keys_let_an_auditor_verify_and_rotate_with_keys(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    url = f"sqlite+aiosqlite:///{database}"
    env = {"AAYU_DATABASE_URL": url, "AAYU_VAR_DIR": str(tmp_path / "var")}
    assert run_cli("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    await _seed(url, tmp_path, 2)
    assert run_cli("audit", "checkpoint", cwd=tmp_path, env=env).returncode == 0

    printed = run_cli("audit", "public-key", "--json", cwd=tmp_path, env=env)
    assert printed.returncode == 0, printed.stderr
    document = json.loads(printed.stdout)
    assert document["algorithm"] == "Ed25519"
    assert [(k["key_id"], k["current"]) for k in document["keys"]] == [("audit-signing:v1", True)]
    keys = tmp_path / "audit-public-keys.json"
    keys.write_text(printed.stdout)
    verified = run_cli(
        "audit", "verify", "--public-keys", str(keys), "--json", cwd=tmp_path, env=env
    )
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["checkpoints_checked"] == 1

    rotated = run_cli("keys", "rotate", "audit-signing", cwd=tmp_path, env=env)
    assert rotated.returncode == 0, rotated.stderr
    listed = run_cli("audit", "public-key", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["audit-signing:v1", "audit-signing:v2"]
    assert lines[0].endswith("(current)")  # v2 signs once its activation delay has passed
