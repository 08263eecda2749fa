"""The durable re-encryption job: the same work as ``keys reencrypt``, run by the job worker.

Each run rewrites one batch per encrypted field in the job's transaction and, while any field
still has older ciphertexts, enqueues the next run; so the work is spread over many short
transactions and survives restarts (the queue is durable, and every batch commits). It uses
the process keyring, which the server and the worker refresh from the database.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.crypto.field_encryption import encrypted_fields
from aayu_accounts.crypto.keyring.process import get_keyring
from aayu_accounts.crypto.keyring.reencrypt import reencrypt_batch
from aayu_accounts.jobs import enqueue, job_handler
from aayu_accounts.models import Base

log = structlog.get_logger(__name__)

REENCRYPT_JOB = "crypto.reencrypt"
DEFAULT_BATCH = 500
# The tables the job walks: the application's (tests point it at their own).
JOB_METADATA: MetaData = Base.metadata


async def enqueue_reencryption(session: AsyncSession, *, batch_size: int = DEFAULT_BATCH) -> None:
    await enqueue(session, REENCRYPT_JOB, {"batch_size": batch_size})


@job_handler(REENCRYPT_JOB)
async def reencrypt_job(session: AsyncSession, payload: dict[str, Any]) -> None:
    keyring = get_keyring()
    limit = int(payload.get("batch_size", DEFAULT_BATCH))
    rewritten = 0
    unfinished = False
    for spec in encrypted_fields(JOB_METADATA):
        done, last = await reencrypt_batch(session, keyring, spec, after=None, limit=limit)
        rewritten += done
        unfinished = unfinished or last is not None
    log.info("keyring.reencrypt_batch", rows=rewritten, more=unfinished)
    if unfinished:
        await enqueue(session, REENCRYPT_JOB, {"batch_size": limit})
