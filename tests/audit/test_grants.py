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
