"""The grants docs/audit.md gives work: the application's role can record and read audit events
but cannot update, delete or truncate them, even with the triggers gone."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aayu_accounts.audit import Actor, AuditAction, record
from aayu_accounts.db import Database
from tests.audit.conftest import drop_triggers, restore_triggers

DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def _documented_grants(app_role: str, archiver_role: str) -> list[str]:
    block = re.search(r"```sql\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert block, "docs/audit.md has no SQL block of grants"
    sql = re.sub(r"--[^\n]*", "", block.group(1))
    sql = sql.replace("aayu_audit_archiver", archiver_role).replace("aayu_app", app_role)
    sql = re.sub(r"\s+LOGIN PASSWORD '[^']*'", " LOGIN", sql)
    return [statement.strip() for statement in sql.split(";") if statement.strip()]


async def test_the_documented_application_role_cannot_change_events(
    audit_engine: AsyncEngine, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("roles and grants are PostgreSQL's")
    suffix = uuid.uuid4().hex[:8]
    app_role, archiver_role = f"aayu_app_{suffix}", f"aayu_archiver_{suffix}"
    async with audit_engine.begin() as conn:
        for statement in _documented_grants(app_role, archiver_role):
            await conn.execute(text(statement))
    as_app = create_async_engine(audit_engine.url.set(username=app_role))
    try:
        async with Database(as_app).session_scope() as session:
            event = await record(session, AuditAction.ORG_CREATED, actor=Actor.system("grants"))
        await drop_triggers(audit_engine)  # only the role stands in the way now
        for statement in (
            "UPDATE audit_events SET actor_id = 'x' WHERE id = :id",
            "DELETE FROM audit_events WHERE id = :id",
            "TRUNCATE audit_events",
        ):
            with pytest.raises(DBAPIError, match="permission denied"):
                async with as_app.begin() as conn:
                    await conn.execute(text(statement), {"id": event.id})
    finally:
        await as_app.dispose()
        await drop_triggers(audit_engine)
        async with audit_engine.begin() as conn:
            await conn.execute(text("DELETE FROM audit_events WHERE actor_id = 'grants'"))
        await restore_triggers(audit_engine)
        async with audit_engine.begin() as conn:
            for role in (app_role, archiver_role):
                await conn.execute(text(f'DROP OWNED BY "{role}"'))
                await conn.execute(text(f'DROP ROLE "{role}"'))


async def test_the_application_role_links_deferred_events_but_cannot_touch_the_intake(
    audit_engine: AsyncEngine, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("roles and grants are PostgreSQL's")
    from aayu_accounts.audit.linker import link_all, linker_for
    from aayu_accounts.audit.service import configure_append_mode

    suffix = uuid.uuid4().hex[:8]
    app_role, archiver_role = f"aayu_app_{suffix}", f"aayu_archiver_{suffix}"
    async with audit_engine.begin() as conn:
        for statement in _documented_grants(app_role, archiver_role):
            await conn.execute(text(statement))
    as_app = create_async_engine(audit_engine.url.set(username=app_role))
    previous = configure_append_mode("deferred")
    try:
        app_db = Database(as_app)
        async with app_db.session_scope() as session:
            await record(session, AuditAction.ORG_CREATED, actor=Actor.system("grants"))
        await link_all(app_db)  # audit_chain_link runs as the owner
        async with app_db.session_scope(write=False) as session:
            linked = await session.scalar(
                text("SELECT count(*) FROM audit_events WHERE actor_id = 'grants'")
            )
            pending = await session.scalar(text("SELECT count(*) FROM audit_intake"))
        assert (linked, pending) == (1, 0)
        async with app_db.session_scope() as session:
            await session.execute(text("SET LOCAL aayu.audit_linking = 'on'"))
            await record(session, AuditAction.ORG_UPDATED, actor=Actor.system("grants"))
        # Setting the linker's flag does not help the role: it has no DELETE on the intake.
        for statement in ("DELETE FROM audit_intake", "UPDATE audit_intake SET actor_id = 'x'"):
            with pytest.raises(DBAPIError, match="permission denied"):
                async with as_app.begin() as conn:
                    await conn.execute(text("SET LOCAL aayu.audit_linking = 'on'"))
                    await conn.execute(text(statement))
        await link_all(app_db)
    finally:
        configure_append_mode(previous)
        await linker_for(as_app).idle()  # no linking pass outlives the test's engine
        await as_app.dispose()
        await drop_triggers(audit_engine)
        async with audit_engine.begin() as conn:
            await conn.execute(text("DELETE FROM audit_events WHERE actor_id = 'grants'"))
        await restore_triggers(audit_engine)
        async with audit_engine.begin() as conn:
            for role in (app_role, archiver_role):
                await conn.execute(text(f'DROP OWNED BY "{role}"'))
                await conn.execute(text(f'DROP ROLE "{role}"'))
