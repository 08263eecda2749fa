"""Audit appends on PostgreSQL: the hash chain against plain inserts of the same rows.

Each writer commits one unit of work at a time, the way requests do. "chained" is
``audit.record()``: chain lock, read of the head, hash, insert, commit. "plain" inserts the very
rows the chained run produced (same columns, one Core insert per row, same indexes and
triggers, in a second database migrated the same way), without the lock, the head read, the
link or the hashing. The
ratio chained/plain is the cost of tamper evidence; targets: >= 0.5 and >= 2,000 events/s.

    python -m bench audit_append      (AAYU_BENCH_DATABASE_URL overrides the PostgreSQL server)
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from sqlalchemy import insert, make_url, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from aayu_accounts import migrate
from aayu_accounts.audit import Actor, AuditAction, record
from aayu_accounts.audit.verify import verify_chain
from aayu_accounts.config import Settings
from aayu_accounts.db import Database, create_engine
from aayu_accounts.models.audit_event import AuditEvent

SERVER = os.environ.get(
    "AAYU_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
WRITERS = 16
EVENTS = 3200
COLUMNS = [c.key for c in AuditEvent.__table__.columns]


@dataclass(frozen=True)
class Scenario:
    name: str
    events_per_transaction: int


SCENARIOS = (Scenario("1 event per transaction", 1), Scenario("5 events per transaction", 5))


async def _admin(sql: str) -> None:
    engine = create_async_engine(SERVER, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def _database(name: str, var_dir: Path) -> Database:
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(SERVER).set(database=name).render_as_string(hide_password=False)
    settings = Settings(
        env="test",
        database_url=url,
        var_dir=var_dir,
        secrets_dir=var_dir / "secrets",
        db_pool_size=WRITERS,
        db_max_overflow=0,
        log_level="WARNING",
        db_slow_statement_seconds=3600,
    )
    engine = create_engine(settings)
    await migrate.upgrade(engine)
    return Database(engine)


async def _timed(writers: int, work: Callable[[int], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(work(w) for w in range(writers)))
    return time.perf_counter() - started


async def _chained(db: Database, scenario: Scenario) -> float:
    per_writer = EVENTS // WRITERS // scenario.events_per_transaction

    async def writer(number: int) -> None:
        for unit in range(per_writer):
            async with db.session_scope() as session:
                for item in range(scenario.events_per_transaction):
                    await record(
                        session,
                        AuditAction.LOGIN_SUCCEEDED,
                        actor=Actor.user(f"user-{number}"),
                        org_id="00000000-0000-4000-8000-000000000000",
                        target_type="auth_session",
                        target_id=f"{number}-{unit}-{item}",
                        details={"method": "password", "mfa": False},
                    )

    return await _timed(WRITERS, writer)


async def _plain(source: Database, target: Database, scenario: Scenario) -> float:
    async with source.session_scope(write=False) as session:
        rows = [
            {column: getattr(event, column) for column in COLUMNS}
            for event in (await session.scalars(select(AuditEvent))).all()
        ]
    size = scenario.events_per_transaction
    units = [rows[i : i + size] for i in range(0, len(rows), size)]

    async def writer(number: int) -> None:
        for unit in units[number::WRITERS]:
            async with target.session_scope() as session:
                for row in unit:
                    # A Core insert per row, as record() makes (no ORM unit of work either side).
                    await session.execute(insert(AuditEvent).values(**row))

    return await _timed(WRITERS, writer)


async def _run() -> list[tuple[str, float, float]]:
    results: list[tuple[str, float, float]] = []
    with TemporaryDirectory() as tmp:
        for scenario in SCENARIOS:
            suffix = uuid.uuid4().hex[:8]
            names = (f"aayu_bench_chain_{suffix}", f"aayu_bench_plain_{suffix}")
            chained_db = await _database(names[0], Path(tmp))
            plain_db = await _database(names[1], Path(tmp))
            try:
                await _warm_up(chained_db, plain_db)
                chained_seconds = await _chained(chained_db, scenario)
                plain_seconds = await _plain(chained_db, plain_db, scenario)
                async with chained_db.session_scope(write=False) as session:
                    report = await verify_chain(session)
                if not report.ok:
                    raise SystemExit(f"the chain broke under load: {report.problem}")
                count = report.checked
                results.append((scenario.name, count / chained_seconds, count / plain_seconds))
            finally:
                await chained_db.dispose()
                await plain_db.dispose()
                for name in names:
                    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


async def _warm_up(*databases: Database) -> None:
    # Open the pools' connections before timing, so neither side pays for connecting.
    for db in databases:
        sessions = [db.new_session() for _ in range(WRITERS)]
        await asyncio.gather(*(s.execute(text("SELECT 1")) for s in sessions))
        for session in sessions:
            await session.close()


def main() -> None:
    results = asyncio.run(_run())
    header = f"{'scenario':<26} {'chained/s':>10} {'plain/s':>10} {'ratio':>6}  target"
    print(header)
    print("-" * len(header))
    for name, chained, plain in results:
        verdict = "ok" if chained >= 2000 and chained / plain >= 0.5 else "MISSED"
        print(f"{name:<26} {chained:>10.0f} {plain:>10.0f} {chained / plain:>6.2f}  {verdict}")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"({WRITERS} concurrent writers, {EVENTS} events per run, PostgreSQL; "
        f"{os.cpu_count()} CPUs, load average {load})"
    )


if __name__ == "__main__":
    main()
