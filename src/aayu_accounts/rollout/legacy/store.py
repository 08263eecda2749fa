"""The legacy document store: what v2.5 kept in the browser's LocalStorage, on disk.

Layout: ``<AAYU_LEGACY_STORE_DIR>/<subject>/<key>.json``, one JSON object per file. The
subject is already opaque (a hash for v2.5 users, an id otherwise), so no name or email
appears in a path. Writes are atomic (temporary file, fsync, rename), so a crash leaves the
old document or the new one, never half of either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
SUFFIX = ".json"


class LegacyDocumentStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, subject: str) -> Path:
        if not SUBJECT_PATTERN.match(subject):
            raise ValueError("invalid subject")
        return self.root / subject

    def _file(self, subject: str, key: str) -> Path:
        if not KEY_PATTERN.match(key):
            raise ValueError("invalid document key")
        # The suffix keeps "." and ".." (valid keys) from naming a directory.
        return self._dir(subject) / f"{key}{SUFFIX}"

    async def list_keys(self, subject: str) -> list[str]:
        return await asyncio.to_thread(self._list_keys, subject)

    def _list_keys(self, subject: str) -> list[str]:
        directory = self._dir(subject)
        if not directory.is_dir():
            return []
        return sorted(
            p.name[: -len(SUFFIX)] for p in directory.iterdir() if p.name.endswith(SUFFIX)
        )

    async def get(self, subject: str, key: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._get, subject, key)

    def _get(self, subject: str, key: str) -> dict[str, Any] | None:
        path = self._file(subject, key)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise TypeError("legacy document is not a JSON object")
        return document

    async def put(self, subject: str, key: str, document: dict[str, Any]) -> None:
        await asyncio.to_thread(self._put, subject, key, document)

    def _put(self, subject: str, key: str, document: dict[str, Any]) -> None:
        path = self._file(subject, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(document, sort_keys=True, separators=(",", ":"))
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(payload)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    async def delete(self, subject: str, key: str) -> bool:
        return await asyncio.to_thread(self._delete, subject, key)

    def _delete(self, subject: str, key: str) -> bool:
        try:
            self._file(subject, key).unlink()
        except FileNotFoundError:
            return False
        return True

    async def subjects(self) -> list[str]:
        return await asyncio.to_thread(self._subjects)

    def _subjects(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and SUBJECT_PATTERN.match(p.name)
        )
