"""Secrets as files in a directory: ``/run/secrets`` (containers) or ``./var/secrets`` (dev).

Layout: ``NAME`` holds version 1 (what a container orchestrator mounts); ``NAME.v2``,
``NAME.v3``... hold later versions written by :meth:`FileSecretStore.set`. Files are created
0600 in a 0700 directory, written atomically (temp file + rename).

In development the store generates a missing secret (256 random bits, base64url) on first use,
so the embedded default needs no setup. Generated names are listed in ``.generated``; with
``generate_missing=False`` (production) the store neither generates nor accepts them, so a dev
secret can never end up protecting production data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.secret_store.base import (
    Secret,
    SecretNotFound,
    SecretRefused,
    SecretStore,
    SecretVersion,
    check_name,
)

GENERATED_LIST = ".generated"
_VERSION_FILE = re.compile(r"^(?P<name>[A-Za-z0-9-]+)\.v(?P<version>[0-9]+)$")


class FileSecretStore(SecretStore):
    provider = "file"

    def __init__(self, directory: Path, *, generate_missing: bool) -> None:
        self.directory = directory
        self.generate_missing = generate_missing
        self._lock = asyncio.Lock()

    async def get(self, name: str, version: str | None = None) -> Secret:
        check_name(name)
        async with self._lock:
            versions = self._versions(name)
            if not versions:
                if version is not None or not self.generate_missing:
                    raise SecretNotFound(name, version)
                return self._write(name, primitives.encode_key(primitives.random_key()), 1, True)
            self._refuse_generated(name)
            wanted = int(version) if version is not None else max(versions)
            if wanted not in versions:
                raise SecretNotFound(name, version)
            value = versions[wanted].read_text(encoding="utf-8").strip()
            return Secret(name, str(wanted), value)

    async def set(self, name: str, value: str) -> Secret:
        check_name(name)
        async with self._lock:
            versions = self._versions(name)
            return self._write(name, value, max(versions, default=0) + 1, False)

    async def list_versions(self, name: str) -> list[SecretVersion]:
        check_name(name)
        versions = self._versions(name)
        if not versions:
            raise SecretNotFound(name)
        return [
            SecretVersion(
                name,
                str(number),
                datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
            )
            for number, path in sorted(versions.items())
        ]

    def _path(self, name: str, version: int) -> Path:
        return self.directory / (name if version == 1 else f"{name}.v{version}")

    def _versions(self, name: str) -> dict[int, Path]:
        found: dict[int, Path] = {}
        if not self.directory.is_dir():
            return found
        if (self.directory / name).is_file():
            found[1] = self.directory / name
        for path in self.directory.glob(f"{name}.v*"):
            match = _VERSION_FILE.match(path.name)
            if match and match["name"] == name and path.is_file():
                found[int(match["version"])] = path
        return found

    def _generated(self) -> frozenset[str]:
        path = self.directory / GENERATED_LIST
        if not path.is_file():
            return frozenset()
        lines = path.read_text(encoding="utf-8").splitlines()
        return frozenset(line.strip() for line in lines if line.strip())

    def _refuse_generated(self, name: str) -> None:
        if not self.generate_missing and name in self._generated():
            raise SecretRefused(
                f"secret {name!r} was generated for development; provide a real one"
            )

    def _write(self, name: str, value: str, version: int, generated: bool) -> Secret:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self._path(name, version)
        if target.exists():
            raise FileExistsError(f"secret file for {name!r} version {version} exists")
        descriptor, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(value + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temp, target)  # fails rather than overwrite a version written meanwhile
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        if generated:
            with (self.directory / GENERATED_LIST).open("a", encoding="utf-8") as listing:
                listing.write(name + "\n")
            (self.directory / GENERATED_LIST).chmod(0o600)
        return Secret(name, str(version), value)
