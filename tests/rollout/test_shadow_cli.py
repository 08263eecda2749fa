"""``aayu-accounts shadow reconcile`` from the shell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aayu_accounts.config import Settings
from aayu_accounts.rollout.legacy.credentials import legacy_subject
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore
from tests.rollout.test_flags_cli import cli_env, run_cli


@pytest.mark.committing
async def test_reconcile_reports_a_document_only_in_the_legacy_store(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    env = cli_env(settings, fresh_database_url, tmp_path)
    env["AAYU_LEGACY_STORE_DIR"] = str(tmp_path / "legacy")
    clean = json.loads(run_cli("shadow", "reconcile", "--json", env=env, cwd=tmp_path).stdout)
    assert clean["divergent"] == 0
    await LegacyDocumentStore(tmp_path / "legacy").put(
        legacy_subject("drmehta"), "prefs", {"name": "Dr Mehta"}
    )
    found = run_cli("shadow", "reconcile", "--check", env=env, cwd=tmp_path, check=False)
    assert found.returncode == 2
    assert "prefs: missing_in_database" in found.stdout
    assert "Mehta" not in found.stdout
