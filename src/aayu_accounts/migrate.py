"""Run and inspect Alembic migrations from code (CLI, ``/ready``, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_PACKAGE_DIR = Path(__file__).resolve().parent


def migrations_dir() -> Path:
    """Shipped inside the wheel as ``_migrations``; in a checkout, ``migrations/`` at the root."""
    shipped = _PACKAGE_DIR / "_migrations"
    if shipped.is_dir():
        return shipped
    return _PACKAGE_DIR.parent.parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade_sync(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _downgrade_sync(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


def _current_sync(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(bind: AsyncEngine | AsyncConnection, revision: str = "head") -> None:
    if isinstance(bind, AsyncConnection):
        await bind.run_sync(_upgrade_sync, revision)
        return
    async with bind.begin() as connection:
        await connection.run_sync(_upgrade_sync, revision)


async def downgrade(bind: AsyncEngine | AsyncConnection, revision: str) -> None:
    if isinstance(bind, AsyncConnection):
        await bind.run_sync(_downgrade_sync, revision)
        return
    async with bind.begin() as connection:
        await connection.run_sync(_downgrade_sync, revision)


async def current_revision(bind: AsyncEngine | AsyncConnection) -> str | None:
    if isinstance(bind, AsyncConnection):
        return await bind.run_sync(_current_sync)
    async with bind.connect() as connection:
        return await connection.run_sync(_current_sync)
