"""``migrate legacy-users``: Argon2id hashes, links, idempotent and resumable, reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.identity.auth_session.service import (
    ACTION_ACCEPT_POLICIES,
    ACTION_MFA_ENROLLMENT,
    required_actions,
)
from aayu_accounts.identity.password.hasher import PasswordHasher
from aayu_accounts.identity.user import repository as user_repository
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.models.user import User
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.legacy.credentials import legacy_subject
from aayu_accounts.rollout.legacy_migration.service import (
    LegacyEntry,
    migrate_legacy_users,
    read_entries,
)

ACTOR = Actor.system("test")


def credential_file(tmp_path: Path, users: list[dict[str, str]]) -> Path:
    path = tmp_path / "legacy-auth.json"
    path.write_text(json.dumps({"users": users}))
    return path


async def test_migrates_each_user_once_with_argon2(
    db: Database, tmp_path: Path, hasher: PasswordHasher
) -> None:
    path = credential_file(
        tmp_path,
        [
            {"username": "drmehta", "password": "scribe-2024", "email": "mehta@clinic.example"},
            {"username": "nurse.ana", "password": "v2.5-rocks", "full_name": "Ana Lopez"},
            {"username": "taken", "password": "pw-taken-1", "email": "taken@clinic.example"},
        ],
    )
    async with db.session_scope() as session:
        existing = User(email="taken@clinic.example", full_name="Someone", password_hash="x")
        await user_repository.add(session, existing)
    entries = read_entries(path)
    first = await migrate_legacy_users(db, hasher, entries, actor=ACTOR)
    assert first.as_dict() == {
        "total": 3,
        "migrated": 1,
        "already": 0,
        "skipped_no_email": 1,
        "conflict": 1,
        "failed": 0,
        "migrated_share": round(1 / 3, 4),
    }
    assert metrics.LEGACY_USERS_MIGRATED._value.get() == pytest.approx(1 / 3, abs=1e-4)
    async with db.session_scope(write=False) as session:
        link = await session.get(LegacyUserLink, legacy_subject("drmehta"))
        assert link is not None
        user = await session.get(User, link.user_id)
        assert user is not None
        assert user.email == "mehta@clinic.example"
        assert user.email_verified_at is not None
        assert user.password_hash.startswith("$argon2id$")
        assert await hasher.verify(user.password_hash, "scribe-2024")
        assert user.mfa_enrollment_required is True
        assert await required_actions(session, Settings(), user) == (
            ACTION_MFA_ENROLLMENT,
            ACTION_ACCEPT_POLICIES,
        )
        links = (await session.scalars(select(LegacyUserLink))).all()
    assert len(links) == 1

    again = await migrate_legacy_users(db, hasher, entries, actor=ACTOR)
    assert again.outcomes["already"] == 1
    assert again.outcomes["migrated"] == 0


async def test_an_interrupted_run_resumes(
    db: Database, tmp_path: Path, hasher: PasswordHasher
) -> None:
    entries = [
        LegacyEntry(f"user{i}", f"user{i}@clinic.example", None, f"password-{i}") for i in range(4)
    ]
    seen: list[str] = []

    def crash_after_two(outcome: str) -> None:
        seen.append(outcome)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await migrate_legacy_users(db, hasher, entries, actor=ACTOR, progress=crash_after_two)
    resumed = await migrate_legacy_users(db, hasher, entries, actor=ACTOR)
    assert resumed.outcomes["already"] == 2
    assert resumed.outcomes["migrated"] == 2
    assert resumed.migrated_share == 1.0


def test_repr_of_an_entry_hides_the_password() -> None:
    entry = LegacyEntry("drmehta", None, None, "scribe-2024")
    assert "scribe-2024" not in repr(entry)
