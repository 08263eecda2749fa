"""``backup create`` / ``backup restore``: PostgreSQL custom-format dumps, SQLite online backups.

Each backup ``FILE`` gets a manifest ``FILE.manifest.json``: backend, schema revision, size,
SHA-256 and when it was made. ``create`` checks the result before reporting success
(``pg_restore --list`` reads the whole archive; SQLite's ``PRAGMA integrity_check``).
``restore`` checks the SHA-256 first, and refuses to put an older schema over a database
whose schema is newer (the code running against it expects the newer one) unless forced.

Passwords never appear on a command line: ``pg_dump`` and ``pg_restore`` get theirs through
the ``PGPASSWORD`` environment variable of the child process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess  # runs the PostgreSQL client tools only  # nosec B404
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, make_url

from aayu_accounts import migrate
from aayu_accounts.db import Database
from aayu_accounts.kit import clock

MANIFEST_SUFFIX = ".manifest.json"
CHUNK = 1024 * 1024


class BackupFailed(Exception):
    """The backup or restore could not be done; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class Manifest:
    backend: str
    schema_revision: str | None
    size_bytes: int
    sha256: str
    created_at: str
    format: str

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise BackupFailed(f"cannot read the manifest {path.name}") from exc


def manifest_path(file: Path) -> Path:
    return file.with_name(file.name + MANIFEST_SUFFIX)


def sha256_of(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupFailed("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _pg_args(url: URL) -> tuple[list[str], dict[str, str]]:
    args = ["--host", url.host or "127.0.0.1", "--port", str(url.port or 5432)]
    if url.username:
        args += ["--username", url.username]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return args, env


def _run(command: list[str], env: dict[str, str]) -> None:
    tool = shutil.which(command[0])
    if tool is None:
        raise BackupFailed(f"{command[0]} is not installed")
    result = subprocess.run(  # noqa: S603 - fixed tool, arguments from our own settings  # nosec B603
        [tool, *command[1:]], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        first = (result.stderr or result.stdout).strip().splitlines()
        raise BackupFailed(f"{command[0]} failed: {first[0] if first else result.returncode}")


def _sqlite_backup(source: Path, target: Path) -> None:
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()


def _sqlite_integrity(file: Path) -> None:
    connection = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    try:
        row = connection.execute("PRAGMA integrity_check").fetchone()
    finally:
        connection.close()
    if not row or row[0] != "ok":
        raise BackupFailed("the SQLite backup failed its integrity check")


def _create_sync(url: URL, file: Path, revision: str | None) -> Manifest:
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_name(file.name + ".partial")
    partial.unlink(missing_ok=True)
    backend = url.get_backend_name()
    if backend == "sqlite":
        _sqlite_backup(_sqlite_path(url), partial)
        _sqlite_integrity(partial)
        kind = "sqlite"
    elif backend == "postgresql":
        args, env = _pg_args(url)
        _run(["pg_dump", *args, "--format=custom", "--file", str(partial), url.database or ""], env)
        _run(["pg_restore", "--list", str(partial)], env)
        kind = "pg_dump-custom"
    else:
        raise BackupFailed(f"no backup method for {backend}")
    os.replace(partial, file)
    manifest = Manifest(
        backend=backend,
        schema_revision=revision,
        size_bytes=file.stat().st_size,
        sha256=sha256_of(file),
        created_at=clock.now().isoformat(),
        format=kind,
    )
    manifest.write(manifest_path(file))
    return manifest


async def create_backup(db: Database, url: str, file: Path) -> Manifest:
    revision = await migrate.current_revision(db.engine)
    return await asyncio.to_thread(_create_sync, make_url(url), file, revision)


def revision_order() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def is_newer(current: str | None, other: str | None) -> bool:
    """Whether revision ``current`` comes after ``other`` (unknown revisions count as newer)."""
    if current is None or current == other:
        return False
    order = revision_order()
    if current not in order:
        return True
    if other is None:
        return True
    if other not in order:
        return False
    return order.index(current) > order.index(other)


def verify(file: Path) -> Manifest:
    if not file.is_file():
        raise BackupFailed(f"{file} does not exist")
    manifest = Manifest.read(manifest_path(file))
    if sha256_of(file) != manifest.sha256:
        raise BackupFailed("the backup does not match its manifest (SHA-256 differs)")
    return manifest


def _restore_sync(url: URL, file: Path, manifest: Manifest) -> None:
    backend = url.get_backend_name()
    if backend != manifest.backend:
        raise BackupFailed(f"a {manifest.backend} backup cannot be restored into {backend}")
    if backend == "sqlite":
        _sqlite_integrity(file)
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_backup(file, target)
        return
    args, env = _pg_args(url)
    _run(
        [
            "pg_restore",
            *args,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--dbname",
            url.database or "",
            str(file),
        ],
        env,
    )


async def restore_backup(db: Database, url: str, file: Path, *, force: bool = False) -> Manifest:
    """Restore ``file`` over the database at ``url``.

    Raises ``BackupFailed`` when the file fails its checks, or when the database's schema is
    newer than the backup's and ``force`` is not set.
    """
    manifest = await asyncio.to_thread(verify, file)
    try:
        current = await migrate.current_revision(db.engine)
    except Exception:  # an empty or unreadable database has no schema to protect
        current = None
    if is_newer(current, manifest.schema_revision) and not force:
        raise BackupFailed(
            f"the database schema ({current}) is newer than the backup's "
            f"({manifest.schema_revision}); use --force to restore anyway"
        )
    await db.dispose()
    await asyncio.to_thread(_restore_sync, make_url(url), file, manifest)
    return manifest
