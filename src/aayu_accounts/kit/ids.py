"""Opaque identifiers: random UUIDv4 strings. They reveal neither order nor count."""

from __future__ import annotations

import uuid


def new_id() -> str:
    return str(uuid.uuid4())
