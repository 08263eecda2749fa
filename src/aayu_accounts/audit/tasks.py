"""The audit trail's leader duties: signed checkpoints (hourly) and retention (daily).

Both run only on the elected leader (``jobs.Scheduler``), each in its own unit of work. The
scheduler runs a duty at once when a process becomes leader, so a checkpoint is written at
start-up and a gap left by downtime is noticed then.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import structlog

from aayu_accounts.audit import repository
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.archive import archive_expired
from aayu_accounts.audit.chain import GENESIS_HASH
from aayu_accounts.audit.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    KeyringCheckpointSigner,
    latest_checkpoint,
    make_checkpoint,
    write_checkpoint_file,
)
from aayu_accounts.audit.service import Actor, record
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


async def write_checkpoint(
    db: Database, settings: Settings, signer: CheckpointSigner
) -> Checkpoint:
    """Sign the committed chain head, write it out, and record that (and any gap) as events.

    Only the committed head is signed: the lock is taken before the head is read, and the
    events recorded here join the chain after it (the next checkpoint covers them). If this
    transaction then fails, the file still describes a committed head, so it stays true.
    """
    directory = settings.audit_checkpoint_path
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
    return checkpoint


class ChainWatch:
    """Re-verifies the chain after each checkpoint: in full the first time (with the
    checkpoints), then only the events appended since, so the hourly cost stays small."""

    def __init__(self, settings: Settings, signer: CheckpointSigner) -> None:
        self.settings = settings
        self.signer = signer
        self.verified_through: int | None = None

    async def run(self, db: Database) -> VerifyReport:
        first_run = self.verified_through is None
        async with db.session_scope(write=False) as session:
            report = await verify_chain(
                session,
                from_sequence=None if first_run else (self.verified_through or 0) + 1,
                checkpoint_dir=self.settings.audit_checkpoint_path if first_run else None,
                signer=self.signer if first_run else None,
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
        watch = ChainWatch(settings, signer)

        async def checkpoint_duty(db: Database) -> None:
            try:
                await write_checkpoint(db, settings, signer)
            except Exception:
                AUDIT_CHECKPOINTS.labels("failed").inc()
                raise
            await watch.run(db)

        async def retention_duty(db: Database) -> None:
            await archive_expired(db, settings, signer)

        interval = settings.audit_checkpoint_interval_seconds
        scheduler.every(interval, "audit-checkpoint", checkpoint_duty)
        scheduler.every(RETENTION_INTERVAL_SECONDS, "audit-retention", retention_duty)

    return register
