"""Shadow writes keep both stores equal; reconciliation finds tampering without leaking data."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aayu_accounts.audit.service import Actor
from aayu_accounts.db import Database
from aayu_accounts.jobs import Worker
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.user_document import UserDocument
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.context import RolloutContext
from aayu_accounts.rollout.flag.snapshot import FlagDefinition, FlagSnapshot
from aayu_accounts.rollout.flag.store import FlagStore
from aayu_accounts.rollout.legacy.credentials import LegacyCredentials, legacy_subject
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore
from aayu_accounts.rollout.path_router import PathRouter
from aayu_accounts.rollout.shadow.reconcile import reconcile
from aayu_accounts.rollout.user_data import service
from aayu_accounts.rollout.user_data.service import Owner

ACTOR = Actor.system("test")
PATIENT_TEXT = "Patient Ramesh Gupta, diabetic"


def context(tmp_path: Path, *flags: FlagDefinition) -> RolloutContext:
    store = FlagStore()
    store.install(FlagSnapshot.build(9, flags), source="test")
    return RolloutContext(
        router=PathRouter(store),
        legacy_credentials=LegacyCredentials(None),
        legacy_store=LegacyDocumentStore(tmp_path / "legacy"),
    )


def shadow_on() -> FlagDefinition:
    return FlagDefinition("SHADOW_WRITES", enabled=True, rollout_percent=100)


def new_database_on() -> FlagDefinition:
    return FlagDefinition("NEW_DATABASE", enabled=True, rollout_percent=100)


def success_count() -> float:
    value = metrics.SHADOW_WRITES.labels("success")._value.get()
    return float(value)


def failure_count() -> float:
    value = metrics.SHADOW_WRITES.labels("failure")._value.get()
    return float(value)


async def test_shadow_writes_converge_and_reconcile_finds_no_divergence(
    db: Database, tmp_path: Path
) -> None:
    owners = [Owner(f"user-{i}", legacy_subject(f"clinician{i}"), True) for i in range(3)]
    legacy_first = context(tmp_path, shadow_on())
    database_first = context(tmp_path, shadow_on(), new_database_on())
    before = success_count()
    async with db.session_scope() as session:
        for owner in owners:
            await service.put_document(
                session, legacy_first, owner, "notes", {"text": PATIENT_TEXT}, actor=ACTOR
            )
            await service.put_document(
                session, database_first, owner, "prefs", {"theme": "dark"}, actor=ACTOR
            )
    await Worker(db).run_once()
    assert success_count() - before == 6
    async with db.session_scope(write=False) as session:
        report = await reconcile(session, legacy_first.legacy_store)
    assert report.subjects == 3
    assert report.documents == 6
    assert report.consistent


async def test_tampering_with_the_new_store_is_reported_without_personal_data(
    db: Database, tmp_path: Path
) -> None:
    owner = Owner("user-1", legacy_subject("drmehta"), True)
    ctx = context(tmp_path, shadow_on())
    async with db.session_scope() as session:
        await service.put_document(
            session, ctx, owner, "notes", {"text": PATIENT_TEXT, "v": 1}, actor=ACTOR
        )
        await service.put_document(session, ctx, owner, "extra", {"a": 1}, actor=ACTOR)
    await Worker(db).run_once()
    async with db.session_scope() as session:
        # Someone with the keys rewrites the sealed content behind the service's back.
        row = await session.scalar(select(UserDocument).where(UserDocument.key == "notes"))
        assert row is not None
        row.content = json.dumps({"text": "tampered", "v": 1})
    await ctx.legacy_store.delete(owner.subject, "extra")
    async with db.session_scope(write=False) as session:
        report = await reconcile(session, ctx.legacy_store)
    kinds = {d.key: d for d in report.divergences}
    assert set(kinds) == {"notes", "extra"}
    assert kinds["notes"].kind == "different"
    assert set(kinds["notes"].fields) == {"text"}
    assert kinds["extra"].kind == "missing_in_legacy"
    printed = json.dumps(report.as_dict())
    for secret in (PATIENT_TEXT, "tampered", "drmehta", owner.subject, owner.user_id):
        assert secret not in printed
    assert metrics.SHADOW_DIVERGENCES._value.get() == 2


async def test_a_failed_shadow_copy_is_counted_and_retried_by_the_job_system(
    db: Database, tmp_path: Path, frozen_clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database is authoritative; the copy to the legacy store fails once, is counted as
    a failure, and the job system's retry lands it: the stores agree again."""
    owner = Owner("user-1", legacy_subject("drretry"), True)
    ctx = context(tmp_path, shadow_on(), new_database_on())
    real_put = LegacyDocumentStore.put
    attempts: list[str] = []

    async def flaky_put(
        store: LegacyDocumentStore, subject: str, key: str, document: dict[str, Any]
    ) -> None:
        attempts.append(key)
        if len(attempts) == 1:
            raise OSError("injected: the legacy disk is busy")
        await real_put(store, subject, key, document)

    monkeypatch.setattr(LegacyDocumentStore, "put", flaky_put)
    successes, failures = success_count(), failure_count()
    async with db.session_scope() as session:
        await service.put_document(session, ctx, owner, "prefs", {"theme": "dark"}, actor=ACTOR)
    worker = Worker(db)
    await worker.run_once()
    assert attempts == ["prefs"]
    assert failure_count() - failures == 1
    assert await ctx.legacy_store.get(owner.subject, "prefs") is None
    async with db.session_scope(write=False) as session:
        assert not (await reconcile(session, ctx.legacy_store)).consistent

    await worker.run_once()  # not due yet: the retry waits for its backoff
    assert attempts == ["prefs"]
    frozen_clock.advance(timedelta(hours=1))
    await worker.run_once()
    assert attempts == ["prefs", "prefs"]
    assert success_count() - successes == 1
    assert await ctx.legacy_store.get(owner.subject, "prefs") == {"theme": "dark"}
    async with db.session_scope(write=False) as session:
        assert (await reconcile(session, ctx.legacy_store)).consistent
