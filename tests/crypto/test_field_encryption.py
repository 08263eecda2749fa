"""Encrypted fields on both databases: round trip, lookups, refusal of plaintext, binding."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy import select, update
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aayu_accounts.crypto.field_encryption import (
    BlindIndexColumn,
    EncryptedColumn,
    PlaintextRefused,
    Sealed,
    encrypted_fields,
    normalize_email,
)
from aayu_accounts.crypto.keyring import KeyPurpose, Keyring, ciphertext_version
from aayu_accounts.crypto.primitives import DecryptionFailed
from aayu_accounts.db import Database
from aayu_accounts.models import Base
from tests.crypto.models import Person, SampleBase, create_sample_tables, drop_sample_tables
from tests.fixtures.crypto import assert_no_plaintext


@pytest_asyncio.fixture(loop_scope="session")
async def people_db(db: Database) -> Database:
    """The rolled-back test database with the sample table created inside the transaction."""
    assert isinstance(db.bind, AsyncConnection)
    await create_sample_tables(db.bind)
    return db


async def test_round_trip_and_lookup(people_db: Database) -> None:
    async with people_db.session_scope() as session:
        person = Person(email="Ada.Lovelace@Example.org", name="Ada Lovelace", phone=None)
        session.add(person)
        person_id = person.id
    async with people_db.session_scope(write=False) as session:
        found = await session.scalar(
            select(Person).where(Person.email.matches(" ada.lovelace@EXAMPLE.org "))
        )
        assert found is not None
        assert found.id == person_id
        assert found.email == "Ada.Lovelace@Example.org"
        assert found.name == "Ada Lovelace"
        assert found.phone is None
        assert (
            await session.scalar(select(Person).where(Person.email.matches("ada@example.org")))
            is None
        )


async def test_plaintext_cannot_be_stored(people_db: Database) -> None:
    with pytest.raises(StatementError) as caught:
        async with people_db.session_scope() as session:
            person = Person(email="grace@example.org", name="Grace Hopper")
            person.name_ciphertext = b"Grace Hopper, stored by mistake"
            session.add(person)
    assert isinstance(caught.value.orig, PlaintextRefused)
    with pytest.raises(StatementError) as caught:
        async with people_db.session_scope() as session:
            person = Person(email="grace@example.org", name="Grace Hopper")
            session.add(person)
            await session.flush()
            await session.execute(
                update(Person).where(Person.id == person.id).values(name_ciphertext="Grace")
            )
    assert isinstance(caught.value.orig, PlaintextRefused)
    with pytest.raises(TypeError):
        Person(email=b"bytes@example.org")


async def test_ciphertext_moved_to_another_row_fails(people_db: Database) -> None:
    async with people_db.session_scope() as session:
        first = Person(email="one@example.org", name="First Person")
        second = Person(email="two@example.org", name="Second Person")
        session.add_all([first, second])
        await session.flush()
        stolen = first.name_ciphertext
        await session.execute(
            update(Person).where(Person.id == second.id).values(name_ciphertext=stolen)
        )
    async with people_db.session_scope(write=False) as session:
        victim = await session.get(Person, second.id, populate_existing=True)
        assert victim is not None
        with pytest.raises(DecryptionFailed):
            _ = victim.name
    # and to another column of the same row
    async with people_db.session_scope() as session:
        await session.execute(
            update(Person).where(Person.id == first.id).values(email_ciphertext=stolen)
        )
    async with people_db.session_scope(write=False) as session:
        moved = await session.get(Person, first.id, populate_existing=True)
        assert moved is not None
        with pytest.raises(DecryptionFailed):
            _ = moved.email


async def test_id_given_after_the_field_still_binds_the_right_row(people_db: Database) -> None:
    chosen = str(uuid.uuid4())
    async with people_db.session_scope() as session:
        session.add(Person(email="late-id@example.org", name="Late Id", id=chosen))
    async with people_db.session_scope(write=False) as session:
        person = await session.get(Person, chosen)
        assert person is not None
        person.__dict__.pop("_aayu_plaintext_cache", None)  # force a real decryption
        assert person.name == "Late Id"


async def test_ciphertext_carries_the_key_version(keyring: Keyring) -> None:
    person = Person(email="v@example.org", name="Version Person")
    assert isinstance(person.email_ciphertext, Sealed)
    assert ciphertext_version(person.email_ciphertext) == keyring.current(KeyPurpose.DATA).version
    assert b"Version" not in person.name_ciphertext


def test_registry_lists_every_field() -> None:
    specs = {(s.table.name, s.column_name) for s in encrypted_fields(SampleBase.metadata)}
    assert specs == {
        ("crypto_test_people", "email_ciphertext"),
        ("crypto_test_people", "name_ciphertext"),
        ("crypto_test_people", "phone_ciphertext"),
    }


def test_normalize_email() -> None:
    assert normalize_email("  Ada@Example.ORG ") == "ada@example.org"


def test_encrypted_column_refuses_plain_bytes() -> None:
    column = EncryptedColumn()
    with pytest.raises(PlaintextRefused):
        column.process_bind_param(b"x" * 100, None)  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="session")
async def committed_people(engine: AsyncEngine) -> AsyncIterator[Database]:
    async with engine.begin() as connection:
        await create_sample_tables(connection)
    try:
        yield Database(engine)
    finally:
        async with engine.begin() as connection:
            await drop_sample_tables(connection)


async def test_no_personal_value_reaches_the_database_in_plaintext(
    committed_people: Database, engine: AsyncEngine
) -> None:
    marker = uuid.uuid4().hex[:10]
    people = [
        (f"patient.{marker}.{n}@clinic-example.org", f"Name{marker} Surname{n}", f"+4477009{n:05d}")
        for n in range(20)
    ]
    async with committed_people.session_scope() as session:
        for email, name, phone in people:
            session.add(Person(email=email, name=name, phone=phone))
    values = [v for row in people for v in row]
    scanned = await assert_no_plaintext(engine, values)
    assert scanned > 0
    # The scan is able to fail: a value in a text column, or as raw bytes in a binary
    # column, is found.
    blob = "BYTEA" if engine.dialect.name == "postgresql" else "BLOB"
    leak = sa.table("crypto_test_leak", sa.column("value"), sa.column("raw"))
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            f"CREATE TABLE crypto_test_leak (value VARCHAR(200), raw {blob})"
        )
    try:
        for row in ({"value": people[0][0], "raw": None}, {"value": None, "raw": people[1][1]}):
            async with engine.begin() as connection:
                await connection.execute(sa.delete(leak))
                await connection.execute(
                    sa.insert(leak).values(
                        value=row["value"],
                        raw=sa.literal(row["raw"].encode(), sa.LargeBinary) if row["raw"] else None,
                    )
                )
            with pytest.raises(AssertionError, match="plaintext"):
                await assert_no_plaintext(engine, values)
    finally:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DROP TABLE crypto_test_leak")


# Columns whose names look personal but are not (clinic, plan, client and lease names; times
# and counters about a personal field). Anything else matching PERSONAL must be encrypted.
NOT_PERSONAL = {
    ("organizations", "name"),
    ("plans", "name"),
    ("service_clients", "name"),
    ("leader_leases", "name"),
    ("users", "email_verified_at"),
    ("users", "totp_last_step"),
}
PERSONAL = re.compile(
    r"e_?mail|phone|mobile|full_name|given_name|family_name|first_name|last_name|surname"
    r"|totp|otp_secret|birth|address|secret|^name$"
)


def test_every_personal_column_of_the_application_is_encrypted() -> None:
    """A later model that adds e.g. ``phone = mapped_column(String)`` fails here."""
    plain = [
        f"{table.name}.{column.name} ({type(column.type).__name__})"
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if PERSONAL.search(column.name)
        and (table.name, column.name) not in NOT_PERSONAL
        and not isinstance(column.type, EncryptedColumn | BlindIndexColumn)
    ]
    assert plain == []
    # Every ciphertext column is reached by an EncryptedField, so `keys retire` counts its
    # rows and `keys reencrypt` moves them.
    registered = {(s.table.name, s.column_name) for s in encrypted_fields(Base.metadata)}
    registered |= {
        (s.table.name, s.index_name) for s in encrypted_fields(Base.metadata) if s.index_name
    }
    typed = {
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, EncryptedColumn | BlindIndexColumn)
    }
    assert typed == registered
    assert {("users", "email_ciphertext"), ("users", "full_name_ciphertext")} <= typed
    assert {("users", "totp_secret_ciphertext"), ("invitations", "email_ciphertext")} <= typed
