"""The audit trail's leader duties: signed checkpoints (hourly) and retention (daily).

Both run only on the elected leader (``jobs.Scheduler``), each in its own unit of work. The
scheduler runs a duty at once when a process becomes leader, so a checkpoint is written at
start-up and a gap left by downtime is noticed then.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import structlog

from aayu_accounts.audit import repository
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.archive import archive_expired
from aayu_accounts.audit.chain import GENESIS_HASH
from aayu_accounts.audit.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    KeyringCheckpointSigner,
    LoadedCheckpoint,
    latest_checkpoint,
    make_checkpoint,
    write_checkpoint_file,
)
from aayu_accounts.audit.linker import link_all
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.audit.storage import (
    CheckpointStore,
    CheckpointTargets,
    DirectoryStore,
    checkpoint_targets,
    copy_missing,
    load_all,
)
from aayu_accounts.audit.verify import VerifyReport, verify_chain
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.jobs import Scheduler
from aayu_accounts.kit import clock
from aayu_accounts.observability.metrics import (
    AUDIT_CHAIN_BROKEN,
    AUDIT_CHECKPOINT_GAPS,
    AUDIT_CHECKPOINTS,
    AUDIT_LAST_CHECKPOINT,
)

log = structlog.get_logger(__name__)

CHECKPOINT_ACTOR = Actor.system("audit-checkpoint")
RETENTION_INTERVAL_SECONDS = 24 * 3600
LINK_SWEEP_SECONDS = 5


async def write_checkpoint(
    db: Database,
    settings: Settings,
    signer: CheckpointSigner,
    targets: CheckpointTargets | None = None,
) -> Checkpoint:
    """Sign the committed chain head, write it out, and record that (and any gap) as events.

    Only the committed head is signed: the lock is taken before the head is read, and the
    events recorded here join the chain after it (the next checkpoint covers them). If this
    transaction then fails, the file still describes a committed head, so it stays true.

    The directory is written under the lock; object stores after the commit (see
    ``storage.py``). A failed upload is recorded (``audit:checkpoint:upload_failed``), counted
    and logged, and does not fail the duty: the checkpoint exists locally and the next run
    uploads whatever the store is missing.
    """
    targets = targets or checkpoint_targets(settings)
    directory = targets.directory
    async with db.session_scope() as session:
        await repository.lock_chain(session)
        head = await repository.chain_head(session)
        now = clock.now()
        previous = latest_checkpoint(directory, signer)
        checkpoint = make_checkpoint(
            signer, head.sequence if head else 0, head.hash if head else GENESIS_HASH, now
        )
        path = write_checkpoint_file(directory, checkpoint)
        allowed_gap = timedelta(seconds=2 * settings.audit_checkpoint_interval_seconds)
        if previous is not None and now - previous.time > allowed_gap:
            AUDIT_CHECKPOINT_GAPS.inc()
            log.warning(
                "audit.checkpoint_gap",
                previous_at=previous.time.isoformat(),
                gap_seconds=int((now - previous.time).total_seconds()),
            )
            await record(
                session,
                AuditAction.CHECKPOINT_GAP_DETECTED,
                actor=CHECKPOINT_ACTOR,
                outcome="failure",
                details={
                    "previous_checkpoint_at": previous.time,
                    "previous_sequence": previous.sequence,
                    "gap_seconds": int((now - previous.time).total_seconds()),
                    "allowed_seconds": int(allowed_gap.total_seconds()),
                },
            )
        await record(
            session,
            AuditAction.CHECKPOINT_WRITTEN,
            actor=CHECKPOINT_ACTOR,
            target_type="audit_checkpoint",
            target_id=path.name,
            details={"sequence": checkpoint.sequence, "hash": checkpoint.hash},
        )
    AUDIT_CHECKPOINTS.labels("written").inc()
    AUDIT_LAST_CHECKPOINT.set(now.timestamp())
    for store in targets.remote:
        await upload_checkpoints(db, directory, store)
    return checkpoint


async def upload_checkpoints(db: Database, directory: Path, store: CheckpointStore) -> bool:
    """Copy what ``store`` lacks; on failure record the event and return False."""
    try:
        copied = await copy_missing(directory, store)
    except Exception as exc:
        AUDIT_CHECKPOINTS.labels("upload_failed").inc()
        log.error(  # noqa: TRY400 - the error's class is the useful part; no traceback noise
            "audit.checkpoint_upload_failed",
            store=store.location,
            error_type=type(exc).__name__,
            error=str(exc)[:200],
        )
        async with db.session_scope() as session:
            await record(
                session,
                AuditAction.CHECKPOINT_UPLOAD_FAILED,
                actor=CHECKPOINT_ACTOR,
                outcome="failure",
                target_type="audit_checkpoint_store",
                target_id=store.location,
                details={"error_type": type(exc).__name__, "retry": "next checkpoint run"},
            )
        return False
    if copied:
        AUDIT_CHECKPOINTS.labels("uploaded").inc(len(copied))
    return True


class ChainWatch:
    """Re-verifies the chain after each checkpoint: in full the first time (with the
    checkpoints), then only the events appended since, so the hourly cost stays small."""

    def __init__(
        self,
        settings: Settings,
        signer: CheckpointSigner,
        targets: CheckpointTargets | None = None,
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.targets = targets
        self.verified_through: int | None = None

    async def _checkpoints(self, targets: CheckpointTargets) -> list[LoadedCheckpoint]:
        try:
            return await load_all(targets.all(), self.signer)
        except Exception as exc:  # the store is down: check the local copies now, not nothing
            log.warning("audit.checkpoint_store_unreadable", error_type=type(exc).__name__)
            return await load_all([DirectoryStore(targets.directory)], self.signer)

    async def run(self, db: Database) -> VerifyReport:
        first_run = self.verified_through is None
        targets = self.targets or checkpoint_targets(self.settings)
        # The first pass checks every checkpoint, the object store's copies included (read
        # before the read-only unit of work, so no transaction waits on the network).
        loaded = await self._checkpoints(targets) if first_run else None
        async with db.session_scope(write=False) as session:
            report = await verify_chain(
                session,
                from_sequence=None if first_run else (self.verified_through or 0) + 1,
                checkpoints=loaded,
            )
        AUDIT_CHAIN_BROKEN.set(0 if report.ok else 1)
        if report.problem is not None:
            log.error(
                "audit.chain_broken",
                kind=report.problem.kind,
                sequence=report.problem.sequence,
                detail=report.problem.detail,
            )
        elif report.last_sequence is not None:
            self.verified_through = report.last_sequence
        return report


def periodic_registration(
    signer_factory: Callable[[], CheckpointSigner] = KeyringCheckpointSigner,
) -> Callable[[Scheduler, Settings], None]:
    """The ``register(scheduler, settings)`` callable for ``app.state.periodic_registrations``."""

    def register(scheduler: Scheduler, settings: Settings) -> None:
        signer = signer_factory()
        targets = checkpoint_targets(settings)
        watch = ChainWatch(settings, signer, targets)

        async def checkpoint_duty(db: Database) -> None:
            try:
                await write_checkpoint(db, settings, signer, targets)
            except Exception:
                AUDIT_CHECKPOINTS.labels("failed").inc()
                raise
            await watch.run(db)

        async def link_sweep(db: Database) -> None:
            if db.engine.dialect.name == "postgresql":
                await link_all(db)

        async def retention_duty(db: Database) -> None:
            await archive_expired(db, settings, signer)

        interval = settings.audit_checkpoint_interval_seconds
        scheduler.every(interval, "audit-checkpoint", checkpoint_duty)
        if settings.audit_append_mode == "deferred":
            # Events whose process died between commit and linking (each process links its
            # own commits at once, linker.py).
            scheduler.every(LINK_SWEEP_SECONDS, "audit-link", link_sweep)
        scheduler.every(RETENTION_INTERVAL_SECONDS, "audit-retention", retention_duty)

    return register
