"""The shadow-write job: bring the other store in line with the authoritative one.

The payload names the document (opaque subject and key) and which store was authoritative;
never the content. The handler copies the source's *current* state (or its absence) to the
target, so replays and out-of-order runs converge on the latest write, and the jobs table
never holds clinical text. Failures are retried by the job system with backoff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.jobs import enqueue, job_handler
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore
from aayu_accounts.rollout.outcomes import RoutePath
from aayu_accounts.rollout.user_data.repository import DatabaseDocumentStore

SHADOW_COPY_JOB = "rollout.shadow.copy"


async def enqueue_shadow_copy(
    session: AsyncSession, *, subject: str, key: str, source: RoutePath, legacy_root: Path
) -> None:
    await enqueue(
        session,
        SHADOW_COPY_JOB,
        {"subject": subject, "key": key, "source": source.value, "legacy_root": str(legacy_root)},
    )


async def copy_document(
    session: AsyncSession, *, subject: str, key: str, source: RoutePath, legacy_root: Path
) -> None:
    database = DatabaseDocumentStore(session)
    legacy = LegacyDocumentStore(legacy_root)
    origin, target = (database, legacy) if source is RoutePath.NEW else (legacy, database)
    document = await origin.get(subject, key)
    if document is None:
        await target.delete(subject, key)
    else:
        await target.put(subject, key, document)


@job_handler(SHADOW_COPY_JOB, max_attempts=10)
async def shadow_copy(session: AsyncSession, payload: dict[str, Any]) -> None:
    try:
        await copy_document(
            session,
            subject=str(payload["subject"]),
            key=str(payload["key"]),
            source=RoutePath(payload["source"]),
            legacy_root=Path(str(payload["legacy_root"])),
        )
    except Exception:
        metrics.SHADOW_WRITES.labels("failure").inc()
        raise
    metrics.SHADOW_WRITES.labels("success").inc()
