"""Helpers shared by the commands: settings, a database unit of work, output."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aayu_accounts.config import Settings, get_settings
from aayu_accounts.db import Database
from aayu_accounts.log_config import configure_logging

T = TypeVar("T")


def settings() -> Settings:
    current = get_settings()
    current.check_production()
    configure_logging(current.log_level, json=current.log_json)
    return current


def run_with_db(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` against a database opened from the environment, then close it."""

    async def runner() -> T:
        db = Database.from_settings(settings())
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(runner())


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str, sort_keys=True) + "\n")
