"""``aayu-accounts serve`` and ``aayu-accounts worker``."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import typer
import uvicorn

from aayu_accounts.app import create_app
from aayu_accounts.cli.common import run_with_db, settings
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.db import Database
from aayu_accounts.email import sender as email_sender
from aayu_accounts.jobs import LeaderElector, Scheduler, Worker
from aayu_accounts.observability.alert import wiring as observability_wiring
from aayu_accounts.rollout import wiring as rollout_wiring


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind"),
    port: int = typer.Option(8000, help="Port to bind"),
    workers: int = typer.Option(1, help="Worker processes"),
    ssl_certfile: str | None = typer.Option(None, help="Serve TLS with this certificate"),
    ssl_keyfile: str | None = typer.Option(None, help="Private key for --ssl-certfile"),
) -> None:
    """Serve the API (and the embedded job worker unless AAYU_RUN_WORKER_IN_PROCESS=false)."""
    current = settings()
    if workers > 1:
        _prepare_multiprocess_metrics(current.var_dir)
    uvicorn.run(
        "aayu_accounts.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is judged by AAYU_TRUSTED_PROXIES, not uvicorn
        server_header=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        log_level=current.log_level.lower(),
    )


def _prepare_multiprocess_metrics(var_dir: Path) -> None:
    """Several workers each count in their own memory; prometheus-client's multi-process mode
    sums them from files in one directory, which must be fresh (stale files would be summed
    too) and set before any worker imports the client."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = var_dir / "prometheus-multiproc"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory.resolve())


def worker() -> None:
    """Run background jobs and the leader's periodic duties without serving HTTP."""
    current = settings()

    async def work(db: Database) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(current, db, stop)

    run_with_db(work)


async def run_worker(current: Settings, db: Database, stop: asyncio.Event) -> None:
    """What ``aayu-accounts worker`` runs until ``stop`` is set."""
    job_worker = Worker(db, poll_seconds=current.job_poll_seconds)
    db.on_jobs_committed(job_worker.wake)
    scheduler = Scheduler(LeaderElector(db, lease_seconds=current.leader_lease_seconds))
    # The server's leader duties (alert rules, flag schedule, audit checkpoints, ...) and,
    # by importing every area, its job handlers: building the app registers both.
    for register in create_app(current).state.periodic_registrations:
        register(scheduler, current)
    # Like the server: the database breaker, breaker alerts and the health monitor.
    observability = await observability_wiring.start_for(db, current)
    # Jobs read and write encrypted fields: load the keyring (refreshed like the server's).
    keys = await start_keyring(current, db)
    email_sender.configure(current)
    try:
        # The rollout's duties need a started flag runtime of their own in this process.
        async with rollout_wiring.worker_duties(current, db, scheduler):
            await asyncio.gather(job_worker.run_forever(stop), scheduler.run_forever(stop))
    finally:
        await keys.stop()
        await observability_wiring.stop(observability)
