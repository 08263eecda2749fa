"""Audit appends on PostgreSQL: the hash chain against plain inserts of the same rows.

Each writer commits one unit of work at a time, the way requests do. "chained" is
``audit.record()``: chain lock, read of the head, hash, insert, commit. "plain" inserts the very
rows the chained run produced (same columns, one Core insert per row, same indexes and
triggers, in a second database migrated the same way), without the lock, the head read, the
link or the hashing. The
ratio chained/plain is the cost of tamper evidence; targets: >= 0.5 and >= 2,000 events/s.

What bounds each side is printed under the table, so a run on a busy machine still says
something: "raw plain" inserts the same rows through bare asyncpg connections (no SQLAlchemy
session, no pool pre-ping: the database's own ceiling with group commit), "raw chained" appends
them through the chain function the same way (the chain's cost in the database alone),
"CPU/event" is this process's
CPU time per event, and the wait states are sampled from ``pg_stat_activity`` every 5 ms while
each side runs (``Lock:advisory`` is a writer queued on the chain lock, ``ClientRead`` a
backend waiting for this process, ``IO:WALSync`` a commit waiting for its WAL flush).

Every side runs on uvloop, the event loop ``aayu-accounts serve`` runs on (uvicorn picks it
when installed, and ``uvicorn[standard]`` installs it): the units of work measured are the
ones a request makes in the server. (On asyncio's own loop the same work costs about 10 %
more CPU.)

The last column runs the deferred mode from two processes (``serve --workers 2``), the same
16 writers split between them, each with its own pool and linker; every other column, and the
targets, are one process.

    python -m bench audit_append      (AAYU_BENCH_DATABASE_URL overrides the PostgreSQL server)
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from types import SimpleNamespace
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import uvloop
from sqlalchemy import insert, make_url, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from aayu_accounts import migrate
from aayu_accounts.audit import Actor, AuditAction, record
from aayu_accounts.audit.chain import EventFields, leaf_hash
from aayu_accounts.audit.linker import link_all, linker_for
from aayu_accounts.audit.service import configure_append_mode
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


def _url(name: str) -> str:
    return make_url(SERVER).set(database=name).render_as_string(hide_password=False)


def _connect(name: str, var_dir: Path, writers: int = WRITERS) -> Database:
    settings = Settings(
        env="test",
        database_url=_url(name),
        var_dir=var_dir,
        secrets_dir=var_dir / "secrets",
        db_pool_size=writers,
        db_max_overflow=1,  # one for the deferred mode's linker (never used by the others)
        log_level="WARNING",
        db_slow_statement_seconds=3600,
    )
    return Database(create_engine(settings))


async def _database(name: str, var_dir: Path) -> Database:
    await _admin(f'CREATE DATABASE "{name}"')
    db = _connect(name, var_dir)
    await migrate.upgrade(db.engine)
    return db


@dataclass
class Measured:
    seconds: float
    cpu_seconds: float
    waits: Counter[str] = field(default_factory=Counter)

    def top_waits(self, count: int = 3) -> str:
        total = sum(self.waits.values()) or 1
        return ", ".join(f"{name} {n / total:.0%}" for name, n in self.waits.most_common(count))


async def _sample_waits(database: str, waits: Counter[str], stop: asyncio.Event) -> None:
    connection = await asyncpg.connect(_dsn(SERVER))
    try:
        while not stop.is_set():
            rows = await connection.fetch(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = "
                "'client backend'",
                database,
            )
            for row in rows:
                wait = f"{row['wait_event_type']}:{row['wait_event']}" if row[1] else "running"
                waits[f"{row['state']} {wait}"] += 1
            await asyncio.sleep(0.005)
    finally:
        await connection.close()


async def _timed(
    writers: int,
    work: Callable[[int], Awaitable[None]],
    database: str,
    finish: Callable[[], Awaitable[object]] | None = None,
) -> Measured:
    stop = asyncio.Event()
    waits: Counter[str] = Counter()
    sampler = asyncio.create_task(_sample_waits(database, waits, stop))
    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(work(w) for w in range(writers)))
    if finish is not None:
        await finish()
    measured = Measured(time.perf_counter() - started, time.process_time() - cpu, waits)
    stop.set()
    await sampler
    return measured


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _chained(
    db: Database, scenario: Scenario, database: str, *, deferred: bool = False
) -> Measured:
    """``deferred``: the deferred append mode; the clock stops when every event is linked."""
    if deferred:
        previous = configure_append_mode("deferred")
        try:
            return await _chained_inline(db, scenario, database, finish=lambda: _linked(db))
        finally:
            configure_append_mode(previous)
    return await _chained_inline(db, scenario, database)


async def _linked(db: Database) -> None:
    await linker_for(db.engine).idle()
    await link_all(db)


def _writer(
    db: Database, scenario: Scenario, events: int, writers: int, label: str = ""
) -> Callable[[int], Awaitable[None]]:
    per_writer = events // writers // scenario.events_per_transaction

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
                        target_id=f"{label}{number}-{unit}-{item}",
                        details={"method": "password", "mfa": False},
                    )

    return writer


async def _chained_inline(
    db: Database,
    scenario: Scenario,
    database: str,
    finish: Callable[[], Awaitable[object]] | None = None,
) -> Measured:
    return await _timed(WRITERS, _writer(db, scenario, EVENTS, WRITERS), database, finish)


# -- two server processes (``serve --workers 2``), deferred mode -----------------------------

PROCESSES = 2


@dataclass(frozen=True)
class _Share:
    """One worker process's part of the two-process run."""

    database: str
    var_dir: str
    scenario: Scenario
    number: int


def _process_main(share: _Share, start: Any, done: Any) -> None:
    """One worker process: WRITERS / PROCESSES writers, its share of the events, deferred
    mode, its own pool and linker. Reports its CPU seconds when its events are linked."""

    async def run() -> None:
        configure_append_mode("deferred")
        writers = WRITERS // PROCESSES
        db = _connect(share.database, Path(share.var_dir), writers)
        try:
            await _warm_up(db, connections=writers)
            work = _writer(db, share.scenario, EVENTS // PROCESSES, writers, f"p{share.number}-")
            start.wait()
            cpu = time.process_time()
            await asyncio.gather(*(work(w) for w in range(writers)))
            await linker_for(db.engine).idle()
            done.put(time.process_time() - cpu)
        finally:
            await db.dispose()

    uvloop.run(run())


async def _two_processes(
    db: Database, scenario: Scenario, database: str, var_dir: Path
) -> Measured:
    """The deferred mode from PROCESSES processes sharing the WRITERS writers: the clock runs
    from the common start until every process's events are linked."""
    context = multiprocessing.get_context("spawn")
    start, done = context.Barrier(PROCESSES + 1), context.Queue()
    processes = [
        context.Process(
            target=_process_main,
            args=(_Share(database, str(var_dir), scenario, n), start, done),
        )
        for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    stop = asyncio.Event()
    waits: Counter[str] = Counter()
    await asyncio.to_thread(start.wait)
    sampler = asyncio.create_task(_sample_waits(database, waits, stop))
    started = time.perf_counter()
    cpu = sum([await asyncio.to_thread(done.get) for _ in processes])
    await link_all(db)  # whatever a child's last pass left (normally nothing)
    measured = Measured(time.perf_counter() - started, cpu, waits)
    stop.set()
    await sampler
    for process in processes:
        await asyncio.to_thread(process.join)
    return measured


async def _rows(source: Database) -> list[dict[str, object]]:
    async with source.session_scope(write=False) as session:
        return [
            {column: getattr(event, column) for column in COLUMNS}
            for event in (await session.scalars(select(AuditEvent))).all()
        ]


async def _plain(
    rows: list[dict[str, object]], target: Database, scenario: Scenario, database: str
) -> Measured:
    size = scenario.events_per_transaction
    units = [rows[i : i + size] for i in range(0, len(rows), size)]

    async def writer(number: int) -> None:
        for unit in units[number::WRITERS]:
            async with target.session_scope() as session:
                for row in unit:
                    # A Core insert per row, as record() makes (no ORM unit of work either side).
                    await session.execute(insert(AuditEvent).values(**row))

    return await _timed(WRITERS, writer, database)


APPEND_ARGUMENTS = (
    "id",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "org_id",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "ip",
    "user_agent",
    "request_id",
    "details",
    "hash_version",
)


async def _raw(
    rows: list[dict[str, object]],
    url: str,
    scenario: Scenario,
    database: str,
    *,
    chained: bool = False,
) -> Measured:
    """The same rows through bare asyncpg: the database's ceiling without our stack.

    ``chained`` appends them with the migration's ``audit_chain_append`` (lock, head, link,
    insert; the leaf hashed here) instead of a plain INSERT: the chain's cost in the database
    alone.
    """
    names: tuple[str, ...]
    if chained:
        names = APPEND_ARGUMENTS
        marks = ", ".join(f"${i}" for i in range(1, len(names) + 2))
        statement = f"SELECT audit_chain_append({marks})"
        rows = [{**row, "leaf": leaf_hash(EventFields.of(SimpleNamespace(**row)))} for row in rows]
        names = (*names, "leaf")
    else:
        names = tuple(COLUMNS)
        columns = ", ".join(names)
        marks = ", ".join(f"${i}" for i in range(1, len(names) + 1))
        statement = f"INSERT INTO audit_events ({columns}) VALUES ({marks})"  # noqa: S608
    size = scenario.events_per_transaction
    units = [rows[i : i + size] for i in range(0, len(rows), size)]
    connections = [await asyncpg.connect(_dsn(url)) for _ in range(WRITERS)]
    for connection in connections:
        await connection.set_type_codec(
            "json", encoder=_json_text, decoder=lambda text: text, schema="pg_catalog"
        )

    async def writer(number: int) -> None:
        connection = connections[number]
        for unit in units[number::WRITERS]:
            async with connection.transaction():
                for row in unit:
                    await connection.execute(statement, *(row[c] for c in names))

    try:
        return await _timed(WRITERS, writer, database)
    finally:
        for connection in connections:
            await connection.close()


def _json_text(value: object) -> str:
    import json  # noqa: PLC0415 - only the raw baseline needs it

    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Result:
    scenario: str
    events: int
    chained: Measured
    plain: Measured
    raw: Measured
    raw_chained: Measured
    deferred: Measured
    deferred_two: Measured  # two processes

    def rate(self, side: Measured) -> float:
        return self.events / side.seconds


async def _database_pair(tmp: Path) -> tuple[list[str], list[Database]]:
    suffix = uuid.uuid4().hex[:8]
    names = [
        f"aayu_bench_{side}_{suffix}"
        for side in ("chain", "plain", "raw", "rawchain", "deferred", "deferred2p")
    ]
    return names, [await _database(name, tmp) for name in names]


async def _run() -> list[Result]:
    results: list[Result] = []
    with TemporaryDirectory() as tmp:
        for scenario in SCENARIOS:
            names, databases = await _database_pair(Path(tmp))
            chained_db, plain_db = databases[0], databases[1]
            try:
                await _warm_up(chained_db, plain_db)
                chained = await _chained(chained_db, scenario, names[0])
                rows = await _rows(chained_db)
                plain = await _plain(rows, plain_db, scenario, names[1])
                urls = [
                    make_url(SERVER).set(database=name).render_as_string(hide_password=False)
                    for name in names
                ]
                raw = await _raw(rows, urls[2], scenario, names[2])
                raw_chained = await _raw(rows, urls[3], scenario, names[3], chained=True)
                await _warm_up(databases[4])
                deferred = await _chained(databases[4], scenario, names[4], deferred=True)
                async with databases[4].session_scope(write=False) as session:
                    deferred_report = await verify_chain(session)
                if not deferred_report.ok or deferred_report.checked != len(rows):
                    raise SystemExit(f"deferred linking lost or broke: {deferred_report}")
                for done in databases[:5]:
                    await done.engine.dispose()  # their pools' connections, not the engines
                two = await _two_processes(databases[5], scenario, names[5], Path(tmp))
                async with databases[5].session_scope(write=False) as session:
                    two_report = await verify_chain(session)
                if not two_report.ok or two_report.checked != len(rows):
                    raise SystemExit(f"two processes' linking lost or broke: {two_report}")
                async with chained_db.session_scope(write=False) as session:
                    report = await verify_chain(session)
                if not report.ok:
                    raise SystemExit(f"the chain broke under load: {report.problem}")
                results.append(
                    Result(
                        scenario.name,
                        report.checked,
                        chained,
                        plain,
                        raw,
                        raw_chained,
                        deferred,
                        two,
                    )
                )
            finally:
                for db in databases:
                    await db.dispose()
                for name in names:
                    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


async def _warm_up(*databases: Database, connections: int = WRITERS) -> None:
    # Open the pools' connections before timing, so neither side pays for connecting.
    for db in databases:
        sessions = [db.new_session() for _ in range(connections)]
        await asyncio.gather(*(s.execute(text("SELECT 1")) for s in sessions))
        for session in sessions:
            await session.close()


def main() -> None:
    results = uvloop.run(_run())
    header = (
        f"{'scenario':<25} {'inline/s':>9} {'deferred/s':>10} {'plain/s':>8} "
        f"{'ratio':>5} {'ratio':>5} {'raw chained/s':>13} {'raw plain/s':>11} {'ratio':>5} "
        f"{'deferred/s':>10}"
    )
    print(header)
    print(
        f"{'':<25} {'(chained)':>9} {'(chained)':>10} {'':>8} {'inl.':>5} {'def.':>5} "
        f"{'':>13} {'':>11} {'':>5} {f'{PROCESSES} procs':>10}"
    )
    print("-" * len(header))
    for result in results:
        chained, plain = result.rate(result.chained), result.rate(result.plain)
        deferred = result.rate(result.deferred)
        raw_chained, raw = result.rate(result.raw_chained), result.rate(result.raw)
        print(
            f"{result.scenario:<25} {chained:>9.0f} {deferred:>10.0f} {plain:>8.0f} "
            f"{chained / plain:>5.2f} {deferred / plain:>5.2f} {raw_chained:>13.0f} "
            f"{raw:>11.0f} {raw_chained / raw:>5.2f} {result.rate(result.deferred_two):>10.0f}"
        )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"({WRITERS} concurrent writers, {EVENTS} events per run, PostgreSQL; "
        f"{os.cpu_count()} CPUs, load average {load}; the last column splits the writers "
        f"over {PROCESSES} processes, as `serve --workers {PROCESSES}`; every other column is "
        "one process)"
    )
    for result in results:
        best = max(result.rate(result.chained), result.rate(result.deferred))
        met = best >= 2000 and best / result.rate(result.plain) >= 0.5
        # Context for a miss: plain inserts of the same rows through the same stack. When they
        # are slower than the chain too, the bound is a transaction's cost, not the chain's.
        plain = result.rate(result.plain)
        print(
            f"targets (ratio >= 0.5 and >= 2,000/s, one process), {result.scenario}: "
            f"{'met' if met else 'MISSED'} (best chained {best:,.0f}/s; plain inserts "
            f"{plain:,.0f}/s)"
        )
    print("\nwhat bounds each side (this process's CPU per event; backends' wait states):")
    for result in results:
        for name, side in (
            ("inline", result.chained),
            ("deferred", result.deferred),
            (f"deferred {PROCESSES}p", result.deferred_two),
            ("plain", result.plain),
            ("raw chained", result.raw_chained),
            ("raw plain", result.raw),
        ):
            per_event = 1e6 * side.cpu_seconds / result.events
            print(
                f"  {result.scenario:<25} {name:<12} {per_event:>5.0f} us CPU/event; "
                f"{side.top_waits()}"
            )


if __name__ == "__main__":
    main()
