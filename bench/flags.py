"""Flag evaluation speed and kill-switch propagation.

1. Evaluations per second of ``FlagSnapshot.is_enabled`` (NEW_AUTH at 25 %, shared bucket
   group, murmur3 bucketing) as a ratio of a bare ``dict`` lookup of precomputed answers in
   the same run, and against the ``UnleashClient`` package evaluating the same flag from a
   bootstrap file (no server), with a check that both agree for every user.
2. Kill-switch propagation across two processes: two listener processes serve the flags as
   app instances do (PostgreSQL + Redis pub/sub, the production set-up); the time from the
   commit of ``NEW_AUTH off`` to each process seeing it, over several rounds.

    python -m bench flags        (PostgreSQL and Redis on their default local ports)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from aayu_accounts import migrate
from aayu_accounts.audit.service import Actor
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.rollout.flag import fanout
from aayu_accounts.rollout.flag import service as flag_service
from aayu_accounts.rollout.flag.schemas import FlagUpdate
from aayu_accounts.rollout.flag.snapshot import FlagDefinition, FlagSnapshot

try:  # a dev extra: the comparison is skipped without it
    from UnleashClient import UnleashClient  # type: ignore[attr-defined]
    from UnleashClient.cache import FileCache

    HAVE_UNLEASH = True
except ImportError:  # pragma: no cover
    HAVE_UNLEASH = False

USERS = [f"user-{i}" for i in range(20_000)]
ROUNDS = 10
GROUP = "v3-rollout"
PG_ADMIN = os.environ.get(
    "AAYU_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS = os.environ.get("AAYU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def snapshot() -> FlagSnapshot:
    return FlagSnapshot.build(
        1,
        [
            FlagDefinition("NEW_AUTH", enabled=True, rollout_percent=25, bucket_group=GROUP),
            FlagDefinition("NEW_DATABASE", enabled=True, rollout_percent=25, bucket_group=GROUP),
            FlagDefinition(
                "BILLING",
                enabled=True,
                rollout_percent=25,
                bucket_group=GROUP,
                requires=("NEW_DATABASE",),
            ),
            FlagDefinition("FALLBACK", enabled=True, rollout_percent=100),
        ],
    )


def rate(evaluate: Callable[[str], bool], rounds: int = ROUNDS) -> float:
    """Evaluations per second (best of ``rounds`` passes over every user)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for user in USERS:
            evaluate(user)
        best = min(best, time.perf_counter() - started)
    return len(USERS) / best


def unleash_client(bootstrap: Path) -> object | None:
    if not HAVE_UNLEASH:
        return None
    cache = FileCache("aayu-bench", directory=str(bootstrap.parent))
    cache.bootstrap_from_file(bootstrap)
    client = UnleashClient(
        url="http://127.0.0.1:9",
        app_name="aayu-bench",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    return client


def evaluation() -> None:
    snap = snapshot()
    answers = {u: snap.is_enabled("NEW_AUTH", user_id=u) for u in USERS}
    ours = rate(lambda u: snap.is_enabled("NEW_AUTH", user_id=u))
    baseline = rate(answers.__getitem__)
    billing = rate(lambda u: snap.is_enabled("BILLING", user_id=u))
    print(f"{'evaluator':<44}{'evals/s':>14}{'vs dict':>10}")
    print(f"{'dict lookup (precomputed answers)':<44}{baseline:>14,.0f}{1.0:>10.3f}")
    print(f"{'FlagSnapshot NEW_AUTH 25 %':<44}{ours:>14,.0f}{ours / baseline:>10.3f}")
    print(
        f"{'FlagSnapshot BILLING (requires NEW_DATABASE)':<44}{billing:>14,.0f}"
        f"{billing / baseline:>10.3f}"
    )
    with tempfile.TemporaryDirectory() as folder:
        bootstrap = Path(folder) / "bootstrap.json"
        bootstrap.write_text(
            json.dumps(
                {
                    "version": 1,
                    "features": [
                        {
                            "name": "NEW_AUTH",
                            "enabled": True,
                            "strategies": [
                                {
                                    "name": "flexibleRollout",
                                    "parameters": {
                                        "rollout": "25",
                                        "stickiness": "userId",
                                        "groupId": GROUP,
                                    },
                                }
                            ],
                        }
                    ],
                }
            )
        )
        client = unleash_client(bootstrap)
        if client is None:
            print("UnleashClient not installed (pip install -e '.[dev]'): comparison skipped")
            return
        is_enabled = client.is_enabled  # type: ignore[attr-defined]
        disagree = sum(is_enabled("NEW_AUTH", {"userId": u}) != answers[u] for u in USERS[:5000])
        theirs = rate(lambda u: is_enabled("NEW_AUTH", {"userId": u}), rounds=3)
        client.destroy()  # type: ignore[attr-defined]
    print(
        f"{'UnleashClient (bootstrap file) NEW_AUTH 25 %':<44}{theirs:>14,.0f}"
        f"{theirs / baseline:>10.3f}"
    )
    verdict = "met" if ours > theirs and disagree == 0 else "missed"
    print(
        f"ours / UnleashClient: {ours / theirs:.1f}x; "
        f"decisions that differ from Unleash's on 5000 users: {disagree} "
        f"(target: faster than UnleashClient, same decisions: {verdict})"
    )


async def _line(process: asyncio.subprocess.Process, prefix: str) -> str:
    """The next line of the listener's output that starts with ``prefix`` (logs skipped)."""
    assert process.stdout is not None
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        if not raw:
            raise RuntimeError("the listener exited early")
        line = raw.decode().strip()
        if line.startswith(prefix):
            return line


async def _propagation_rounds(rounds: int) -> list[tuple[float, float]]:
    name = f"aayu_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    prefix = f"aayu-bench:{uuid.uuid4().hex[:8]}:"
    settings = Settings.model_validate(
        {"env": "test", "database_url": url, "redis_url": REDIS, "redis_prefix": prefix}
    )
    db = Database.from_settings(settings)
    timings: list[tuple[float, float]] = []
    try:
        await migrate.upgrade(db.engine)
        channel = fanout.redis_channel(prefix, "flags")

        async def change(enabled: bool) -> float:
            async with fanout.redis_publishing(settings, channel):
                async with db.session_scope() as session:
                    await flag_service.update_flag(
                        session,
                        "NEW_AUTH",
                        FlagUpdate(enabled=enabled, rollout_percent=100),
                        actor=Actor.system("bench"),
                    )
                committed = time.time()
            return committed

        for _ in range(rounds):
            await change(True)
            listeners = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench._flag_listener",
                    url,
                    REDIS,
                    prefix,
                    stdout=asyncio.subprocess.PIPE,
                    env={**os.environ, "AAYU_LOG_LEVEL": "WARNING"},
                )
                for _ in range(2)
            ]
            for process in listeners:
                await _line(process, "ready")
            committed = await change(False)
            seen = []
            for process in listeners:
                line = await _line(process, "off")
                seen.append(float(line.split()[1]) - committed)
                await process.wait()
            timings.append((seen[0], seen[1]))
    finally:
        await db.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
    return timings


def propagation(rounds: int = 5) -> None:
    try:
        timings = asyncio.run(_propagation_rounds(rounds))
    except OSError as exc:
        print(f"kill-switch propagation skipped: PostgreSQL/Redis unavailable ({exc})")
        return
    slowest = [max(pair) * 1000 for pair in timings]
    print(
        f"kill switch, commit -> seen by both of 2 processes (PostgreSQL + Redis pub/sub, "
        f"poll at 30 s), {rounds} rounds:"
    )
    verdict = "met" if max(slowest) < 1000 else "missed"
    print(
        f"  median {statistics.median(slowest):.1f} ms, max {max(slowest):.1f} ms "
        f"(budget: 1000 ms, {verdict}; the strategy's: 30 s)"
    )


def main() -> None:
    evaluation()
    propagation()


if __name__ == "__main__":
    main()
