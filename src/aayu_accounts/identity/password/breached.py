"""Offline breached-password lookup in a sorted SHA-1 list (the Have I Been Pwned format).

The file holds one upper-case SHA-1 hex digest per line, optionally followed by ``:count``,
sorted by digest (HIBP's "ordered by hash" download). It is memory-mapped and binary-searched,
so a list of hundreds of millions of lines costs no start-up time and little RAM, and no
password or hash prefix ever leaves the machine.
"""

from __future__ import annotations

import hashlib
import mmap
from pathlib import Path

_DIGEST_LEN = 40


class BreachedPasswords:
    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as handle:
            size = path.stat().st_size
            self._map: mmap.mmap | None = (
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else None
            )

    def contains(self, password: str) -> bool:
        """Whether the exact password (UTF-8, as HIBP hashes it) is on the list."""
        digest = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False)
        return self._contains_digest(digest.hexdigest().upper().encode("ascii"))

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def _line_at(self, offset: int) -> tuple[bytes, int]:
        """The digest of the first full line starting at or after ``offset``, and its end."""
        data = self._map
        assert data is not None
        if offset > 0:
            newline = data.find(b"\n", offset - 1)
            if newline == -1:
                return b"", len(data)
            offset = newline + 1
        end = data.find(b"\n", offset)
        if end == -1:
            end = len(data)
        return data[offset : offset + _DIGEST_LEN].upper(), end

    def _contains_digest(self, wanted: bytes) -> bool:
        if self._map is None:
            return False
        # Binary search over byte offsets: each probe snaps to the next line start.
        low, high = 0, len(self._map)
        while low < high:
            middle = (low + high) // 2
            digest, end = self._line_at(middle)
            if not digest or digest > wanted:
                high = middle
            elif digest == wanted:
                return True
            else:
                low = end + 1
        digest, _ = self._line_at(low) if low < len(self._map) else (b"", 0)
        return digest == wanted
