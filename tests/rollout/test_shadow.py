"""Shadow writes keep both stores equal; reconciliation finds tampering without leaking data."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import update

from aayu_accounts.audit.service import Actor
from aayu_accounts.db import Database
from aayu_accounts.jobs import Worker
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
        await session.execute(
            update(UserDocument)
            .where(UserDocument.key == "notes")
            .values(document={"text": "tampered", "v": 1})
        )
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
