"""User documents are sealed at rest (AES-256-GCM under the data key, bound to their row), and
rows left in plaintext by versions before migration 0011 are sealed by the leader's duty."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import insert, text

from aayu_accounts.db import Database
from aayu_accounts.jobs import LeaderElector, Scheduler
from aayu_accounts.kit import clock
from aayu_accounts.models.user_document import UserDocument
from aayu_accounts.rollout.user_data.repository import DatabaseDocumentStore
from aayu_accounts.rollout.wiring import periodic_registration, seal_documents

NOTE = "Patient reports chest pain since Tuesday; ECG ordered"


async def _raw(db: Database, subject: str) -> list[tuple[object, bytes | None]]:
    async with db.session_scope(write=False) as session:
        rows = await session.execute(
            text("SELECT document, document_ciphertext FROM user_documents WHERE subject = :s"),
            {"s": subject},
        )
        return [(row[0], None if row[1] is None else bytes(row[1])) for row in rows]


async def test_a_document_is_stored_sealed_and_reads_back(db: Database) -> None:
    subject = f"user-{uuid.uuid4()}"
    document = {"text": NOTE, "visits": [1, 2.5, None], "ok": True, "name": "Dr Anaïs"}
    async with db.session_scope() as session:
        await DatabaseDocumentStore(session).put(subject, "notes", document)
    [(plaintext, sealed)] = await _raw(db, subject)
    assert plaintext is None
    assert sealed is not None
    assert NOTE.encode() not in sealed
    assert b"chest pain" not in sealed
    async with db.session_scope(write=False) as session:
        assert await DatabaseDocumentStore(session).get(subject, "notes") == document


async def test_plaintext_rows_from_before_are_sealed_by_the_leader_duty(db: Database) -> None:
    subject = f"legacy-{uuid.uuid4()}"
    document = {"text": NOTE}
    now = clock.now()
    async with db.session_scope() as session:
        await session.execute(
            insert(UserDocument).values(
                id=str(uuid.uuid4()),
                subject=subject,
                key="notes",
                document=document,
                created_at=now,
                updated_at=now,
            )
        )
    # Readable before it is sealed...
    async with db.session_scope(write=False) as session:
        assert await DatabaseDocumentStore(session).get(subject, "notes") == document
    [(plaintext, sealed)] = await _raw(db, subject)
    assert sealed is None
    assert NOTE in json.dumps(plaintext)
    await seal_documents(db)
    # ...and after, from the sealed copy only.
    [(plaintext, sealed)] = await _raw(db, subject)
    assert plaintext is None
    assert sealed is not None
    assert NOTE.encode() not in sealed
    async with db.session_scope(write=False) as session:
        assert await DatabaseDocumentStore(session).get(subject, "notes") == document


def test_the_sealing_duty_is_a_leader_duty() -> None:
    class _Runtime:
        class rollout:  # noqa: N801 - stands for the settings object
            auto_rollback_enabled = False

    scheduler = Scheduler(LeaderElector(db=None))  # type: ignore[arg-type]
    periodic_registration(_Runtime())(scheduler, None)  # type: ignore[arg-type]
    assert "rollout.seal_documents" in scheduler.tasks
