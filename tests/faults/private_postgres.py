"""A PostgreSQL cluster of the test's own, so it can really be restarted.

``initdb`` into a temporary directory and ``pg_ctl`` start/restart/stop on a free loopback port
(Unix socket in the same directory, nothing on other interfaces). The shared server on 5432 is
never touched. As root the binaries run as the ``postgres`` user (PostgreSQL refuses root).
With ``AAYU_REQUIRE_SERVICES=1`` missing binaries fail the test instead of skipping it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.client.server import free_port
from tests.fixtures.services import require


def _bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(found.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(versions[0]).parent if versions else None


@dataclass
class PrivatePostgres:
    bindir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"{args[0]} failed: {done.stderr or done.stdout}"

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-w", "-t", "60",
            "-l", str(self.root / "server.log"), "-o", options, *extra,
        )  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self, mode: str = "fast") -> None:
        """``fast``: what an operator's restart does (every client disconnected, checkpoint);
        ``immediate``: a crash (no checkpoint; the WAL is replayed at start)."""
        self._ctl("restart", "-m", mode)

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _bindir()
    require("PostgreSQL server binaries (initdb, pg_ctl)", bindir is not None)
    assert bindir is not None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        require("a 'postgres' user to run a private cluster as", owner is not None)
    root = Path(tempfile.mkdtemp(prefix="aayu-pg-"))
    try:
        if os.geteuid() == 0 and owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        cluster = PrivatePostgres(bindir=bindir, root=root, port=free_port())
        cluster._run(
            "initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
