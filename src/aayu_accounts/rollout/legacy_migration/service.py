"""Import v2.5 users into the identity store: idempotent, resumable, one user per transaction.

For each entry of the credential list:

* already linked (a previous run) -> ``already``;
* no email (v2.5 allowed that; the identity store signs in by email) -> ``skipped_no_email``;
* the email belongs to an account that exists already -> ``conflict`` (never linked
  automatically: an address match is not proof that the two are one person);
* else a user is created with the v2.5 password hashed with Argon2id, the email marked
  verified (v2.5 accounts were provisioned by the clinic), and the link written -> ``migrated``.

Each user commits on its own, so an interrupted run loses at most the user in flight and a
re-run resumes where it stopped. Audit events name the new user id, never the username.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.db import Database
from aayu_accounts.identity.password.hasher import PasswordHasher
from aayu_accounts.identity.user import repository as user_repository
from aayu_accounts.kit import clock
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.models.user import User
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.legacy.credentials import (
    LegacyCredentialsInvalid,
    LegacyUser,
    legacy_subject,
)

OUTCOMES = ("migrated", "already", "skipped_no_email", "conflict", "failed")


@dataclass(frozen=True)
class LegacyEntry:
    username: str
    email: str | None
    full_name: str | None
    password: str = field(repr=False)

    @property
    def subject(self) -> str:
        return legacy_subject(self.username)


def read_entries(path: Path) -> list[LegacyEntry]:
    """The credential file with its passwords (only the migration needs them in clear)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LegacyCredentialsInvalid("the legacy credential file is not JSON") from exc
    users = document.get("users") if isinstance(document, dict) else None
    if not isinstance(users, list):
        raise LegacyCredentialsInvalid('the legacy credential file has no "users" list')
    entries = []
    for position, item in enumerate(users):
        if not isinstance(item, dict):
            raise LegacyCredentialsInvalid(f"entry {position} is not an object")
        username, password = item.get("username"), item.get("password")
        if not isinstance(username, str) or not username.strip():
            raise LegacyCredentialsInvalid(f"entry {position} has no username")
        if not isinstance(password, str) or not password:
            raise LegacyCredentialsInvalid(f"entry {position} has no password")
        email, name = item.get("email"), item.get("full_name")
        entries.append(
            LegacyEntry(
                username=username.strip(),
                email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
                full_name=name.strip() if isinstance(name, str) and name.strip() else None,
                password=password,
            )
        )
    return entries


@dataclass
class MigrationReport:
    total: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    migrated_share: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            **{name: self.outcomes.get(name, 0) for name in OUTCOMES},
            "migrated_share": round(self.migrated_share, 4),
        }


async def migrate_one(
    session: AsyncSession,
    hasher: PasswordHasher,
    entry: LegacyEntry,
    *,
    actor: Actor,
    via: str = "command",
    password_hash: str | None = None,
) -> str:
    linked = await session.get(LegacyUserLink, entry.subject)
    if linked is not None:
        return "already"
    if entry.email is None:
        return "skipped_no_email"
    if await user_repository.get_by_email(session, entry.email) is not None:
        return "conflict"
    now = clock.now()
    user = User(
        email=entry.email,
        full_name=entry.full_name or entry.username,
        password_hash=password_hash or await hasher.hash(entry.password),
    )
    user.password_changed_at = now
    user.email_verified_at = now
    # v2.5 had no second factor: a migrated account enrolls MFA before anything else.
    user.mfa_enrollment_required = True
    await user_repository.add(session, user)
    session.add(LegacyUserLink(legacy_subject=entry.subject, user_id=user.id, migrated_at=now))
    await session.flush()
    await record(
        session,
        AuditAction.LEGACY_USERS_MIGRATED,
        actor=actor,
        target_type="user",
        target_id=user.id,
        details={"outcome": "migrated", "via": via},
    )
    return "migrated"


# Who migrates a v2.5 user at their first sign-in, in the audit trail.
SIGN_IN_ACTOR = Actor.system("legacy-sign-in")


async def migrate_at_sign_in(
    session: AsyncSession, hasher: PasswordHasher, user: LegacyUser, password: str
) -> str | None:
    """Just-in-time migration: ``password`` was just verified against the v2.5 list.

    A v2.5 user nobody ran ``migrate legacy-users`` for yet gets their identity account
    here, exactly as the command would have made it (Argon2id hash of the same password,
    MFA enrollment required), so deploying this service before the batch migration locks
    nobody out. Returns the identity user id, or None when the command would not link them
    either (no email, or the address belongs to another account). Two first sign-ins at
    once: the savepoint's loser finds the winner's link.
    """
    entry = LegacyEntry(
        username=user.username, email=user.email, full_name=user.full_name, password=password
    )
    if entry.email is None:
        return None
    # Hashed before the first write, so no lock or transaction is held across Argon2id.
    password_hash = await hasher.hash(password)
    try:
        async with session.begin_nested():
            outcome = await migrate_one(
                session,
                hasher,
                entry,
                actor=SIGN_IN_ACTOR,
                via="sign_in",
                password_hash=password_hash,
            )
    except IntegrityError:
        outcome = "raced"
    if outcome == "migrated":
        metrics.LEGACY_USERS_MIGRATED_AT_SIGN_IN.inc()
    if outcome not in ("migrated", "already", "raced"):
        return None
    link = await session.get(LegacyUserLink, entry.subject, populate_existing=True)
    return link.user_id if link is not None else None


class HasSubject(Protocol):
    @property
    def subject(self) -> str: ...


async def migrated_share(session: AsyncSession, entries: Sequence[HasSubject]) -> float:
    """Share of ``entries`` (v2.5 users, from the file or the command) linked to an account."""
    if not entries:
        return 0.0
    subjects = [e.subject for e in entries]
    linked = await session.scalar(
        select(func.count())
        .select_from(LegacyUserLink)
        .where(LegacyUserLink.legacy_subject.in_(subjects))
    )
    return int(linked or 0) / len(entries)


async def migrate_legacy_users(
    db: Database,
    hasher: PasswordHasher,
    entries: list[LegacyEntry],
    *,
    actor: Actor,
    progress: Callable[[str], None] | None = None,
) -> MigrationReport:
    report = MigrationReport(total=len(entries))
    for entry in entries:
        try:
            async with db.session_scope() as session:
                outcome = await migrate_one(session, hasher, entry, actor=actor)
        except Exception:  # one bad entry must not stop the others; counted and reported
            outcome = "failed"
        report.outcomes[outcome] += 1
        if progress is not None:
            progress(outcome)
    async with db.session_scope(write=False) as session:
        report.migrated_share = await migrated_share(session, entries)
    metrics.LEGACY_USERS_MIGRATED.set(report.migrated_share)
    return report
