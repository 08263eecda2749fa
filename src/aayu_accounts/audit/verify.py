"""Recompute the chain and check the checkpoints; name the first event that was tampered with.

One pass in sequence order, in keyset batches (memory stays flat however long the trail). Each
event must (1) hash to its stored hash, (2) link to the stored hash of the event before it and
(3) carry the next sequence number. At the first event that fails, a few look-ups tell what the
intruder most likely did:

* ``modified``: the event's content no longer matches its hash (or a signed checkpoint);
* ``removed``: the event that should come next is missing (a gap in the numbering, an event
  that links to a hash no longer present, or a checkpoint beyond the end of the table);
* ``reordered``: the event links to an event that is in the table but elsewhere;
* ``inserted``: an event whose removal would leave the chain intact (its successor links over
  it to its predecessor), or one that links to nothing that ever existed.

A trail whose oldest events were archived starts after sequence 1; its first event must link to
the ``last_hash`` that the archival job recorded (in the chain) for the archived stretch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit import repository
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.chain import GENESIS_HASH, EventFields, UnknownHashVersion, event_hash
from aayu_accounts.audit.checkpoint import (
    CheckpointVerifier,
    LoadedCheckpoint,
    load_checkpoints,
)
from aayu_accounts.audit.linker import pending_count
from aayu_accounts.models.audit_event import AuditEvent

ProblemKind = Literal["modified", "removed", "inserted", "reordered", "checkpoint_invalid"]


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    sequence: int | None
    detail: str


@dataclass
class VerifyReport:
    checked: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    head_hash: str | None = None
    checkpoints_checked: int = 0
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _self_consistent(event: AuditEvent) -> bool:
    try:
        return event_hash(event.prev_hash, EventFields.of(event), event.hash_version) == event.hash
    except (UnknownHashVersion, ValueError, TypeError):
        return False


async def _one(session: AsyncSession, *conditions: Any) -> AuditEvent | None:
    query = select(AuditEvent).where(*conditions).order_by(AuditEvent.sequence).limit(1)
    return (await session.scalars(query)).first()


async def _classify(
    session: AsyncSession,
    previous: AuditEvent | None,
    expected_prev_hash: str,
    event: AuditEvent,
) -> Problem:
    """What happened between ``previous`` (last good event) and ``event`` (first bad one)."""
    expected_sequence = previous.sequence + 1 if previous else event.sequence
    linked = event.prev_hash == expected_prev_hash
    if linked and event.sequence == expected_sequence:
        following = await _one(session, AuditEvent.sequence == event.sequence + 1)
        if following is not None and following.prev_hash == expected_prev_hash:
            return Problem(
                "inserted",
                event.sequence,
                f"event {event.sequence} was inserted: event {following.sequence} links past it",
            )
        return Problem("modified", event.sequence, "the event's content does not match its hash")
    if event.sequence > expected_sequence and not linked:
        missing = (
            f"{expected_sequence}"
            if event.sequence == expected_sequence + 1
            else f"{expected_sequence}..{event.sequence - 1}"
        )
        return Problem("removed", expected_sequence, f"event(s) {missing} missing from the chain")
    if linked:
        return Problem("modified", event.sequence, "the event's sequence number was changed")
    # The link is broken with no gap in the numbering.
    if previous is not None and event.prev_hash == previous.prev_hash:
        return Problem(
            "inserted",
            previous.sequence,
            f"event {previous.sequence} was inserted: event {event.sequence} links past it",
        )
    target = await _one(session, AuditEvent.hash == event.prev_hash)
    if target is not None:
        return Problem(
            "reordered",
            event.sequence,
            f"event {event.sequence} follows event {target.sequence} in the chain "
            "but is stored elsewhere",
        )
    successor = await _one(session, AuditEvent.prev_hash == expected_prev_hash)
    if successor is not None and successor.id != event.id:
        return Problem(
            "inserted",
            event.sequence,
            f"event {event.sequence} links to no known event; the chain continues at "
            f"event {successor.sequence}",
        )
    if _self_consistent(event):
        return Problem(
            "removed",
            expected_sequence,
            f"the event(s) before {event.sequence} were removed and the rest renumbered",
        )
    return Problem("inserted", event.sequence, f"event {event.sequence} links to no known event")


async def _archive_anchor(session: AsyncSession, first: AuditEvent) -> str | None:
    """The hash the first remaining event must link to, as recorded by the archival job."""
    query = select(AuditEvent).where(AuditEvent.action == AuditAction.EVENTS_ARCHIVED.value)
    for archived in (await session.scalars(query)).all():
        details = archived.details or {}
        if details.get("through_sequence") == first.sequence - 1:
            last_hash = details.get("last_hash")
            return str(last_hash) if last_hash is not None else None
    return None


def _index_checkpoints(
    loaded_all: list[LoadedCheckpoint], report: VerifyReport
) -> tuple[dict[int, list[str]], int | None] | None:
    """Signed hashes by sequence and the newest sequence; None (problem set) for a checkpoint
    that is malformed or whose signature does not verify."""
    by_sequence: dict[int, list[str]] = {}
    newest: int | None = None
    seen: set[tuple[str, object]] = set()
    unchecked = 0
    for loaded in loaded_all:
        if loaded.checkpoint is not None and not loaded.checkable:
            unchecked += 1
            continue
        if loaded.checkpoint is None or not loaded.valid_signature:
            where = f" in {loaded.location}" if loaded.location else ""
            report.problem = Problem(
                "checkpoint_invalid",
                loaded.checkpoint.sequence if loaded.checkpoint else None,
                f"checkpoint {loaded.name}{where} is malformed or its signature is invalid",
            )
            return None
        cp = loaded.checkpoint
        if (loaded.name, cp) in seen:
            continue
        seen.add((loaded.name, cp))
        by_sequence.setdefault(cp.sequence, []).append(cp.hash)
        newest = max(newest or 0, cp.sequence)
    if unchecked:
        report.notes.append(
            f"{unchecked} checkpoint(s) signed with a key this verifier does not hold "
            "(HMAC, from before Ed25519 signatures): not checked"
        )
    return by_sequence, newest


async def verify_chain(
    session: AsyncSession,
    *,
    from_sequence: int | None = None,
    checkpoint_dir: Path | None = None,
    signer: CheckpointVerifier | None = None,
    checkpoints: Sequence[LoadedCheckpoint] | None = None,
    batch: int = 2000,
) -> VerifyReport:
    """Verify the trail (from ``from_sequence`` on); the report names the first problem.

    Checkpoints are those of ``checkpoint_dir`` (verified with ``signer``) and/or the ones
    given already loaded (``storage.load_all``: directory and object stores). Identical copies
    of one checkpoint in several places count once.
    """
    report = VerifyReport()
    loaded_all: list[LoadedCheckpoint] = list(checkpoints or [])
    if checkpoint_dir is not None and signer is not None:
        loaded_all.extend(load_checkpoints(checkpoint_dir, signer))
    elif checkpoint_dir is not None:
        report.notes.append("no checkpoint signer: checkpoints not checked")
    indexed = _index_checkpoints(loaded_all, report)
    if indexed is None:
        return report
    by_sequence, newest_checkpoint = indexed

    previous: AuditEvent | None = None
    expected_prev: str | None = None
    if from_sequence is not None and from_sequence > 1:
        previous = await repository.event_at(session, from_sequence - 1)
        expected_prev = previous.hash if previous else None

    async for event in repository.iter_chain(session, from_sequence=from_sequence, batch=batch):
        if report.checked == 0:
            report.first_sequence = event.sequence
            if expected_prev is None:
                expected_prev = await _starting_link(session, event, from_sequence, report)
                if report.problem:
                    return report
        assert expected_prev is not None  # set above for the first event
        sound = (
            event.prev_hash == expected_prev
            and (previous is None or event.sequence == previous.sequence + 1)
            and _self_consistent(event)
        )
        if not sound:
            report.problem = await _classify(session, previous, expected_prev, event)
            return report
        for signed_hash in by_sequence.get(event.sequence, []):
            report.checkpoints_checked += 1
            if signed_hash != event.hash:
                report.problem = Problem(
                    "modified",
                    event.sequence,
                    f"event {event.sequence} differs from its signed checkpoint: the chain up to "
                    "it was rewritten",
                )
                return report
        report.checked += 1
        report.last_sequence = event.sequence
        report.head_hash = event.hash
        previous, expected_prev = event, event.hash
    pending = await pending_count(session)
    if pending:
        report.notes.append(
            f"{pending} committed event(s) not linked yet (deferred mode): checked once linked"
        )
    end = report.last_sequence if report.last_sequence is not None else (from_sequence or 1) - 1
    if newest_checkpoint is not None and newest_checkpoint > end:
        report.problem = Problem(
            "removed",
            end + 1,
            f"a signed checkpoint covers event {newest_checkpoint} but the chain ends at {end}",
        )
    return report


async def _starting_link(
    session: AsyncSession, first: AuditEvent, from_sequence: int | None, report: VerifyReport
) -> str:
    """What the first event read must link to."""
    if first.sequence == 1:
        return GENESIS_HASH
    if from_sequence is not None and first.sequence == from_sequence:
        # Verifying a stretch from the middle: its start is taken on trust (checkpoints and a
        # full run cover it).
        report.notes.append(f"started at event {from_sequence}; earlier events not checked")
        return first.prev_hash
    anchor = await _archive_anchor(session, first)
    if anchor is None:
        report.problem = Problem(
            "removed",
            (from_sequence or 1),
            f"the chain starts at event {first.sequence} and no archival record covers the "
            "events before it",
        )
        return first.prev_hash
    report.notes.append(f"events before {first.sequence} are archived")
    return anchor
