"""Rotation of every key kind without a failed operation, re-encryption and retirement.

Two keyrings loaded from the same database and secret store stand for two instances: one
rotates, the other only refreshes on its schedule. Every operation during the grace period
must succeed on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import KeyPurpose, Keyring, KeyUse, tasks
from aayu_accounts.crypto.keyring import service as keys
from aayu_accounts.crypto.keyring.reencrypt import pending, reencrypt_all
from aayu_accounts.crypto.keyring.runtime import KeyringRuntime, start_keyring
from aayu_accounts.crypto.keyring.usage import rows_per_version
from aayu_accounts.crypto.secret_store.factory import build_secret_store
from aayu_accounts.db import Database
from aayu_accounts.jobs import Worker
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.job import Job
from tests.crypto.models import Person, SampleBase, create_sample_tables

DELAY = timedelta(seconds=120)


class Instances:
    def __init__(self, db: Database, a: KeyringRuntime, b: KeyringRuntime) -> None:
        self.db = db
        self.a = a
        self.b = b

    async def refresh(self) -> None:
        await self.b.refresh(self.db)
        await self.a.refresh(self.db)  # A last: the process keyring is A's

    async def rotate(self, name: str) -> str:
        async with self.db.session_scope() as session:
            store = self.a.store
            assert store is not None
            return await keys.rotate(
                session, store, name, activation_delay=DELAY, recorder=keys.no_recorder
            )

    async def retire(self, name: str, version: str) -> None:
        store = self.a.store
        assert store is not None
        async with self.db.session_scope() as session:
            await keys.retire(
                session,
                store,
                name,
                version,
                recorder=keys.no_recorder,
                metadata=SampleBase.metadata,
            )


@pytest_asyncio.fixture(loop_scope="session")
async def instances(
    settings: Settings, db: Database, frozen_clock: FrozenClock
) -> AsyncIterator[Instances]:
    assert isinstance(db.bind, AsyncConnection)
    await create_sample_tables(db.bind)
    b = await start_keyring(settings, db, refresh=False)
    a = await start_keyring(settings, db, refresh=False)
    try:
        yield Instances(db, a, b)
    finally:
        await a.stop()
        await b.stop()


def _exchange(producer: Keyring, consumer: Keyring, purpose: KeyPurpose) -> None:
    """One operation made on one instance and checked on the other; must not fail."""
    message = b"operation payload"
    if purpose.use is KeyUse.SIGN:
        version, mac = producer.sign(purpose, message)
        assert consumer.verify(purpose, message, version, mac), f"{purpose} verify failed"
    elif purpose.use is KeyUse.ENCRYPT:
        sealed = producer.encrypt(purpose, message, b"row-1")
        assert consumer.decrypt(purpose, sealed, b"row-1") == message
    else:
        index = producer.blind_index("someone@example.org", "email")
        assert index in consumer.blind_index_candidates("someone@example.org", "email")


@pytest.mark.parametrize("purpose", list(KeyPurpose))
async def test_rotation_without_failed_operations(
    instances: Instances, frozen_clock: FrozenClock, purpose: KeyPurpose
) -> None:
    a, b = instances.a, instances.b

    def both_ways() -> None:
        _exchange(a.keyring, b.keyring, purpose)
        _exchange(b.keyring, a.keyring, purpose)

    old_version, old_mac = (
        a.keyring.sign(purpose, b"old token") if purpose.use is KeyUse.SIGN else (1, b"")
    )
    both_ways()
    new = await instances.rotate(purpose.value)
    assert new == "2"
    # Before anyone refreshes: nobody uses the new version yet.
    both_ways()
    await a.refresh(instances.db)  # the rotating instance reloads first
    both_ways()
    assert a.keyring.current(purpose).version == 1  # published, not yet active
    frozen_clock.advance(30)
    await b.refresh(instances.db)  # the other instance's scheduled refresh
    both_ways()
    frozen_clock.advance(DELAY)
    assert a.keyring.current(purpose).version == 2
    assert b.keyring.current(purpose).version == 2
    both_ways()
    if purpose.use is KeyUse.SIGN:
        # Something signed before the rotation still verifies during the grace period.
        assert b.keyring.verify(purpose, b"old token", old_version, old_mac)
    await instances.retire(purpose.value, "1")
    await instances.refresh()
    both_ways()
    if purpose.use is KeyUse.SIGN:
        assert not b.keyring.verify(purpose, b"old token", old_version, old_mac)


async def test_data_key_rotation_reencrypt_retire(
    instances: Instances, frozen_clock: FrozenClock
) -> None:
    people = [(f"user{n}@example.org", f"Person Number{n}") for n in range(7)]
    async with instances.db.session_scope() as session:
        session.add_all(Person(email=e, name=n, phone=f"+100000{n}") for e, n in people[:4])
    await instances.rotate("data")
    await instances.rotate("blind-index")
    await instances.refresh()
    async with instances.db.session_scope() as session:  # written with the old, still-current keys
        session.add(Person(email=people[4][0], name=people[4][1]))
    frozen_clock.advance(DELAY + timedelta(seconds=1))
    async with instances.db.session_scope() as session:  # written with the new keys
        session.add_all(Person(email=e, name=n) for e, n in people[5:])

    async with instances.db.session_scope() as session:
        assert (await rows_per_version(session, KeyPurpose.DATA, SampleBase.metadata)).keys() == {
            1,
            2,
        }
        # Lookups find rows indexed under either blind-index version.
        for email, name in people:
            found = await session.scalar(select(Person).where(Person.email.matches(email.upper())))
            assert found is not None
            assert found.name == name

    with pytest.raises(keys.KeyStillUsed, match="reencrypt"):
        await instances.retire("data", "1")
    with pytest.raises(keys.KeyStillUsed, match="reencrypt"):
        await instances.retire("blind-index", "1")
    with pytest.raises(keys.KeyStillUsed, match="current"):
        await instances.retire("data", "2")

    # Interrupted after one batch, then resumed.
    done_first = await reencrypt_all(
        instances.db, instances.a.keyring, metadata=SampleBase.metadata, batch_size=2, max_batches=1
    )
    assert done_first == 2
    progress: list[int] = []
    done_rest = await reencrypt_all(
        instances.db,
        instances.a.keyring,
        metadata=SampleBase.metadata,
        batch_size=2,
        on_progress=progress.append,
    )
    assert done_first + done_rest >= 5 + 4  # names, emails and phones of the old rows
    assert sum(progress) == done_rest
    async with instances.db.session_scope() as session:
        assert all(
            p.pending == 0 for p in await pending(session, instances.a.keyring, SampleBase.metadata)
        )

    await instances.retire("data", "1")
    await instances.retire("blind-index", "1")
    await instances.refresh()
    assert [k.version for k in instances.a.keyring.versions(KeyPurpose.DATA)] == [2]
    async with instances.db.session_scope(write=False) as session:
        rows = (
            await session.scalars(select(Person).execution_options(populate_existing=True))
        ).all()
        assert len(rows) == len(people)
        for row in rows:
            row.__dict__.pop("_aayu_plaintext_cache", None)
            assert (row.email, row.name) in people
        for email, _ in people:
            assert (
                await session.scalar(select(Person).where(Person.email.matches(email))) is not None
            )


async def test_master_key_rotation_rewraps_without_touching_data(
    instances: Instances, settings: Settings
) -> None:
    async with instances.db.session_scope() as session:
        session.add(Person(email="master@example.org", name="Master Rotation"))
    new_master = await instances.rotate("master")
    assert new_master == "2"
    # The instance that has not refreshed and the one that has keep agreeing on every key.
    await instances.a.refresh(instances.db)
    for purpose in KeyPurpose:
        _exchange(instances.a.keyring, instances.b.keyring, purpose)
        _exchange(instances.b.keyring, instances.a.keyring, purpose)
    assert (settings.secrets_dir / "master-key.v2").exists()
    # A fresh process with the new master key reads everything.
    fresh = await start_keyring(settings, instances.db, refresh=False)
    try:
        async with instances.db.session_scope(write=False) as session:
            person = await session.scalar(
                select(Person).where(Person.email.matches("master@example.org"))
            )
            assert person is not None
            person.__dict__.pop("_aayu_plaintext_cache", None)
            assert person.name == "Master Rotation"
        assert fresh.master is not None
        assert fresh.master.current_version == "2"
    finally:
        await fresh.stop()
    store = build_secret_store(settings)
    assert [v.version for v in await store.list_versions("master-key")] == ["1", "2"]


async def test_unknown_key_name_is_refused(instances: Instances) -> None:
    with pytest.raises(keys.UnknownKeyName):
        await instances.rotate("nonsense")


async def test_the_durable_job_reencrypts_in_batches(
    instances: Instances, frozen_clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "JOB_METADATA", SampleBase.metadata)
    async with instances.db.session_scope() as session:
        session.add_all(
            Person(email=f"job{n}@example.org", name=f"Job Person{n}") for n in range(5)
        )
    await instances.rotate("data")
    frozen_clock.advance(DELAY + timedelta(seconds=1))
    await instances.refresh()
    async with instances.db.session_scope() as session:
        await tasks.enqueue_reencryption(session, batch_size=2)
    worker = Worker(instances.db)
    for _ in range(10):
        if not await worker.run_once():
            break
        frozen_clock.advance(1)
    async with instances.db.session_scope() as session:
        assert (await rows_per_version(session, KeyPurpose.DATA, SampleBase.metadata)).keys() == {2}
        statuses = (
            await session.scalars(select(Job.status).where(Job.kind == tasks.REENCRYPT_JOB))
        ).all()
        # 5 rows, 2 per run: the job re-enqueued itself until nothing was left.
        assert statuses == ["done", "done", "done"]
