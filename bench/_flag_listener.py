"""A process that serves flags like an app instance and reports when NEW_AUTH turns off.

Started twice by ``bench/flags.py``: prints "ready <version>" once its runtime listens, then
"off <unix time>" the moment its snapshot shows NEW_AUTH off, and exits.
"""

from __future__ import annotations

import asyncio
import sys
import time

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.rollout.flag.runtime import FlagRuntime
from aayu_accounts.rollout.settings import RolloutSettings


async def run(database_url: str, redis_url: str, prefix: str) -> None:
    settings = Settings.model_validate(
        {
            "env": "test",
            "database_url": database_url,
            "redis_url": redis_url or None,
            "redis_prefix": prefix,
        }
    )
    db = Database.from_settings(settings)
    runtime = FlagRuntime(settings, RolloutSettings(flag_poll_seconds=30.0))
    await runtime.start(db)
    try:
        # Polling, not an event: this process measures when the snapshot changes, and must
        # not add a notification path of its own to what it measures.
        while not runtime.listener_connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        print(f"ready {runtime.store.version}", flush=True)
        while runtime.store.snapshot.is_enabled("NEW_AUTH"):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        print(f"off {time.time():.6f}", flush=True)
    finally:
        await runtime.stop()
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2], sys.argv[3]))
