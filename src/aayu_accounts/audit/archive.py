"""Retention: events older than the retention period are archived to signed JSONL, then deleted.

This is the only path that deletes audit events (the delete trigger lets a row go only while
this job holds a permit in its transaction). Retention is never below six years (config.py).

An archive verifies on its own, without the database: each line holds an event with its hash,
previous hash and hash version, so the chain is recomputed from the file; the last line signs
the SHA-256 of everything before it with the audit signing key (Ed25519; archives written
before the switch carry an HMAC under the audit checkpoint key). After deletion the job
records ``audit:events:archived`` with the last archived hash, so the verifier knows what the
first remaining event must link to.

The oldest events go first and only as an unbroken prefix of the chain: an archive never skips
an event, and a stretch that fails verification is not archived (evidence is never destroyed
because it looked wrong).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit import repository
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.canonical import JsonValue, canonical_bytes, format_time
from aayu_accounts.audit.chain import GENESIS_HASH, EventFields, UnknownHashVersion, event_hash
from aayu_accounts.audit.checkpoint import CheckpointSigner, CheckpointVerifier
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.observability.metrics import AUDIT_ARCHIVED_EVENTS

log = structlog.get_logger(__name__)

ARCHIVE_FORMAT = "aayu-audit-archive"
ARCHIVE_VERSION = 1
ARCHIVE_BATCH = 10_000
_SIGNATURE_CONTEXT = b"aayu-audit-archive-v1\x00"
RETENTION_ACTOR = Actor.system("audit-retention")


class ChainBrokenRefusingToArchive(RuntimeError):
    """The oldest stretch of the chain does not verify; it is kept for investigation."""


def _event_document(event: AuditEvent) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "id": event.id,
        "occurred_at": format_time(event.occurred_at),
        "actor_kind": event.actor_kind,
        "actor_id": event.actor_id,
        "org_id": event.org_id,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "outcome": event.outcome,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details or {},
        "hash_version": event.hash_version,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def _fields(document: dict[str, Any]) -> EventFields:
    return EventFields(
        event_id=str(document["id"]),
        occurred_at=datetime.fromisoformat(str(document["occurred_at"]).replace("Z", "+00:00")),
        actor_kind=document["actor_kind"],
        actor_id=document["actor_id"],
        org_id=document["org_id"],
        action=document["action"],
        target_type=document["target_type"],
        target_id=document["target_id"],
        outcome=document["outcome"],
        ip=document["ip"],
        user_agent=document["user_agent"],
        request_id=document["request_id"],
        details=document["details"],
    )


def _chain_ok(events: Sequence[AuditEvent], anchor: str) -> bool:
    expected = anchor
    for index, event in enumerate(events):
        if index and event.sequence != events[index - 1].sequence + 1:
            return False
        if event.prev_hash != expected:
            return False
        try:
            computed = event_hash(event.prev_hash, EventFields.of(event), event.hash_version)
        except (UnknownHashVersion, ValueError, TypeError):
            return False
        if computed != event.hash:
            return False
        expected = event.hash
    return True


def write_archive(directory: Path, events: Sequence[AuditEvent], signer: CheckpointSigner) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    first, last = events[0], events[-1]
    header: dict[str, JsonValue] = {
        "format": ARCHIVE_FORMAT,
        "version": ARCHIVE_VERSION,
        "first_sequence": first.sequence,
        "last_sequence": last.sequence,
        "count": len(events),
        "first_prev_hash": first.prev_hash,
        "last_hash": last.hash,
        "created_at": format_time(clock.now()),
    }
    lines = [canonical_bytes(header)] + [canonical_bytes(_event_document(e)) for e in events]
    body = b"\n".join(lines) + b"\n"
    key_id, signature = signer.sign(_SIGNATURE_CONTEXT + hashlib.sha256(body).digest())
    trailer = json.dumps({"key_id": key_id, "signature": signature.hex()}, sort_keys=True)
    target = directory / f"audit-archive-{first.sequence:015d}-{last.sequence:015d}.jsonl"
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".archive-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(body + trailer.encode() + b"\n")
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


@dataclass(frozen=True)
class ArchiveReport:
    ok: bool
    count: int
    first_sequence: int | None
    last_sequence: int | None
    last_hash: str | None
    problem: str | None = None


def verify_archive(path: Path, signer: CheckpointVerifier) -> ArchiveReport:
    """Verify an archive file on its own: signature, header, and the chain inside it."""
    raw = path.read_bytes()
    body, _, trailer_line = raw.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"

    def bad(problem: str, count: int = 0) -> ArchiveReport:
        return ArchiveReport(False, count, None, None, None, problem)

    try:
        trailer = json.loads(trailer_line)
        signature = bytes.fromhex(trailer["signature"])
        key_id = str(trailer["key_id"])
        lines = body.rstrip(b"\n").split(b"\n")
        header = json.loads(lines[0])
        documents = [json.loads(line) for line in lines[1:]]
    except (ValueError, KeyError, TypeError, IndexError):
        return bad("the file is not a well-formed audit archive")
    if not signer.can_verify(key_id):
        return bad(f"the archive is signed with {key_id}, a key this verifier does not hold")
    if not signer.verify(key_id, _SIGNATURE_CONTEXT + hashlib.sha256(body).digest(), signature):
        return bad("the archive's signature does not verify")
    if header.get("format") != ARCHIVE_FORMAT or header.get("count") != len(documents):
        return bad("the header does not describe the events in the file")
    expected = header.get("first_prev_hash")
    sequence = header.get("first_sequence")
    for count, document in enumerate(documents):
        try:
            computed = event_hash(
                document["prev_hash"], _fields(document), document["hash_version"]
            )
        except (UnknownHashVersion, ValueError, TypeError, KeyError):
            return bad(f"event line {count + 1} cannot be hashed", count)
        if (
            document["prev_hash"] != expected
            or document["sequence"] != sequence
            or computed != document["hash"]
        ):
            return bad(f"the chain breaks at event {document.get('sequence')}", count)
        expected = document["hash"]
        sequence += 1
    if expected != header.get("last_hash"):
        return bad("the last hash does not match the header", len(documents))
    return ArchiveReport(
        True, len(documents), header["first_sequence"], header["last_sequence"], expected
    )


async def _anchor(session: AsyncSession, first: AuditEvent) -> str | None:
    if first.sequence == 1:
        return GENESIS_HASH
    query = select(AuditEvent).where(AuditEvent.action == AuditAction.EVENTS_ARCHIVED.value)
    for archived in (await session.scalars(query)).all():
        details = archived.details or {}
        if details.get("through_sequence") == first.sequence - 1:
            last_hash = details.get("last_hash")
            return str(last_hash) if last_hash is not None else None
    return None


async def archive_expired(
    db: Database,
    settings: Settings,
    signer: CheckpointSigner,
    *,
    batch: int = ARCHIVE_BATCH,
) -> list[Path]:
    """Archive and delete every event older than the retention period; returns the files.

    Raises :class:`ChainBrokenRefusingToArchive` when the stretch to archive does not verify.
    """
    cutoff = clock.now() - timedelta(days=settings.audit_retention_days)
    written: list[Path] = []
    while True:
        async with db.session_scope() as session:
            await repository.lock_chain(session)
            oldest = list(await repository.oldest_events(session, limit=batch))
            expired: list[AuditEvent] = []
            for event in oldest:
                if event.occurred_at >= cutoff:
                    break
                expired.append(event)
            if not expired:
                return written
            anchor = await _anchor(session, expired[0])
            if anchor is None or not _chain_ok(expired, anchor):
                log.error("audit.archive_refused", first_sequence=expired[0].sequence)
                raise ChainBrokenRefusingToArchive(
                    f"events from {expired[0].sequence} do not verify; run 'audit verify'"
                )
            path = write_archive(settings.audit_archive_path, expired, signer)
            last = expired[-1]
            deleted = await repository.delete_through(session, last.sequence)
            await record(
                session,
                AuditAction.EVENTS_ARCHIVED,
                actor=RETENTION_ACTOR,
                link_now=True,  # the verifier anchors the remaining chain on this event
                target_type="audit_archive",
                target_id=path.name,
                details={
                    "first_sequence": expired[0].sequence,
                    "through_sequence": last.sequence,
                    "count": deleted,
                    "last_hash": last.hash,
                    "retention_days": settings.audit_retention_days,
                },
            )
        AUDIT_ARCHIVED_EVENTS.inc(deleted)
        log.info("audit.archived", count=deleted, file=path.name)
        written.append(path)
        if len(expired) < batch:
            return written
