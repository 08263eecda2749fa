"""Checkpoints copied to an S3-compatible store, spoken to over real HTTP.

The store is moto's S3 server on loopback (a free port), reached by the real boto3 client the
code builds from settings: nothing is patched. A missing bucket (a 4xx) and a closed port (an
outage) are the two ways an upload fails here.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import select

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.checkpoint import (
    KeyringCheckpointSigner,
    checkpoint_bytes,
    file_name,
    iter_checkpoint_files,
    make_checkpoint,
)
from aayu_accounts.audit.storage import (
    S3Store,
    checkpoint_targets,
    load_all,
)
from aayu_accounts.audit.tasks import ChainWatch, write_checkpoint
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring, install_keyring
from aayu_accounts.db import Database
from aayu_accounts.kit import resilience
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.audit_event import AuditEvent
from tests.audit.helpers import seed, verify
from tests.fixtures.database import make_settings


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def fast_retries() -> None:
    """The object store's policy with short backoffs (the autouse fixture restores it)."""
    store = resilience.dependency(resilience.OBJECT_STORE)
    store.configure(
        replace(
            store.policy,
            timeout_seconds=5.0,
            backoff_initial_seconds=0.01,
            backoff_max_seconds=0.02,
        )
    )


def _settings(tmp_path: Path, endpoint: str, bucket: str) -> Settings:
    return make_settings(
        "sqlite+aiosqlite:///unused.db",
        tmp_path,
        audit_checkpoint_dir=tmp_path / "checkpoints",
        audit_checkpoint_url=f"s3://{bucket}/audit/checkpoints",
        audit_s3_endpoint_url=endpoint,
        audit_s3_access_key_id="test-access-key",
        audit_s3_secret_access_key="test-secret-key",
    )


def _bucket(endpoint: str) -> str:
    name = f"aayu-audit-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test-access-key",
        aws_secret_access_key="test-secret-key",
    )
    client.create_bucket(Bucket=name)
    return name


def _objects(endpoint: str, bucket: str) -> list[str]:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test-access-key",
        aws_secret_access_key="test-secret-key",
    )
    listed = client.list_objects_v2(Bucket=bucket, Prefix="audit/checkpoints/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


async def _failures(db: Database) -> list[tuple[str, str | None, dict[str, object]]]:
    """(outcome, target id, details) of each upload failure recorded."""
    async with db.session_scope(write=False) as session:
        query = select(AuditEvent).where(
            AuditEvent.action == AuditAction.CHECKPOINT_UPLOAD_FAILED.value
        )
        rows = (await session.scalars(query)).all()
        return [(row.outcome, row.target_id, dict(row.details)) for row in rows]


def test_the_url_chooses_the_targets(tmp_path: Path) -> None:
    plain = make_settings("sqlite+aiosqlite:///unused.db", tmp_path)
    assert checkpoint_targets(plain).directory == plain.audit_checkpoint_path
    assert checkpoint_targets(plain).remote == ()
    moved = make_settings(
        "sqlite+aiosqlite:///unused.db", tmp_path, audit_checkpoint_url=f"file://{tmp_path}/cp"
    )
    assert checkpoint_targets(moved).directory == tmp_path / "cp"
    s3 = checkpoint_targets(_settings(tmp_path, "http://127.0.0.1:9", "bucket"))
    assert s3.directory == tmp_path / "checkpoints"
    (store,) = s3.remote
    assert isinstance(store, S3Store)
    assert store.location == "s3://bucket/audit/checkpoints"
    # Refused by the settings (a scheme we do not write to) or by the targets (no bucket).
    for bad in ("ftp://host/x", "s3://", "file://remote-host/x"):
        with pytest.raises(ValueError, match="file:///path or s3://bucket/prefix"):
            checkpoint_targets(
                make_settings("sqlite+aiosqlite:///unused.db", tmp_path, audit_checkpoint_url=bad)
            )


async def test_checkpoints_reach_the_store_and_verify_from_it(
    trail_db: Database, tmp_path: Path, s3_endpoint: str
) -> None:
    bucket = _bucket(s3_endpoint)
    settings = _settings(tmp_path, s3_endpoint, bucket)
    signer = KeyringCheckpointSigner()
    await seed(trail_db, 3)
    written = await write_checkpoint(trail_db, settings, signer)
    (name,) = [path.name for path in iter_checkpoint_files(tmp_path / "checkpoints")]
    assert _objects(s3_endpoint, bucket) == [f"audit/checkpoints/{name}"]
    assert await _failures(trail_db) == []

    targets = checkpoint_targets(settings)
    (store,) = targets.remote
    from_store = await load_all([store], signer)
    assert [(c.checkpoint, c.valid_signature) for c in from_store] == [(written, True)]
    # The verifier checks both copies; identical copies count once.
    report = await verify(trail_db, checkpoints=await load_all(targets.all(), signer))
    assert report.ok, report.problem
    assert report.checkpoints_checked == 1

    # A checkpoint signed with any other key (an intruder's) is refused, and named with
    # where it was found.
    intruder = install_keyring(Keyring.generate())
    try:
        forged = make_checkpoint(signer, written.sequence, "f" * 64, written.time)
    finally:
        install_keyring(intruder)
    await store.put(file_name(forged).replace(".json", "-x.json"), checkpoint_bytes(forged))
    report = await verify(trail_db, checkpoints=await load_all(targets.all(), signer))
    assert report.problem is not None
    assert report.problem.kind == "checkpoint_invalid"
    assert f"s3://{bucket}/audit/checkpoints" in report.problem.detail


async def test_a_failed_upload_is_an_event_and_is_retried_next_run(
    trail_db: Database, tmp_path: Path, s3_endpoint: str, frozen_clock: FrozenClock
) -> None:
    bucket = f"aayu-audit-missing-{uuid.uuid4().hex[:8]}"  # not created yet: 404 NoSuchBucket
    settings = _settings(tmp_path, s3_endpoint, bucket)
    signer = KeyringCheckpointSigner()
    await seed(trail_db, 2)
    await write_checkpoint(trail_db, settings, signer)  # does not raise: the file is local
    assert len(list(iter_checkpoint_files(tmp_path / "checkpoints"))) == 1
    (failure,) = await _failures(trail_db)
    assert failure[:2] == ("failure", f"s3://{bucket}/audit/checkpoints")
    assert failure[2]["error_type"] == "ObjectStoreError"
    # A 4xx is an answer, not an outage: the breaker stays closed.
    assert resilience.dependency(resilience.OBJECT_STORE).state == "closed"

    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test-access-key",
        aws_secret_access_key="test-secret-key",
    ).create_bucket(Bucket=bucket)
    frozen_clock.advance(timedelta(seconds=settings.audit_checkpoint_interval_seconds))
    await write_checkpoint(trail_db, settings, signer)
    local = sorted(path.name for path in iter_checkpoint_files(tmp_path / "checkpoints"))
    assert len(local) == 2
    assert _objects(s3_endpoint, bucket) == [f"audit/checkpoints/{name}" for name in local]
    assert len(await _failures(trail_db)) == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.usefixtures("fast_retries")
async def test_an_unreachable_store_is_retried_then_opens_the_breaker(
    trail_db: Database, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, f"http://127.0.0.1:{_closed_port()}", "bucket")
    signer = KeyringCheckpointSigner()
    store = resilience.dependency(resilience.OBJECT_STORE)
    await write_checkpoint(trail_db, settings, signer)
    # Three attempts (the policy), each a failure counted against the breaker.
    assert store.breaker.fail_counter == 3
    await write_checkpoint(trail_db, settings, signer)
    assert store.state == "open"  # five failures: the breaker alert fires (observability)
    assert len(await _failures(trail_db)) == 2
    assert len(list(iter_checkpoint_files(tmp_path / "checkpoints"))) == 2


async def test_the_watch_falls_back_to_local_copies_when_the_store_is_down(
    trail_db: Database, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, f"http://127.0.0.1:{_closed_port()}", "bucket")
    store = resilience.dependency(resilience.OBJECT_STORE)
    store.configure(replace(store.policy, attempts=1))
    signer = KeyringCheckpointSigner()
    await seed(trail_db, 2)
    await write_checkpoint(trail_db, settings, signer)
    report = await ChainWatch(settings, signer).run(trail_db)
    assert report.ok
    assert report.checkpoints_checked == 1
