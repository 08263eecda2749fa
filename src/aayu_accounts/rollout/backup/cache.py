"""``cache purge``: forget every shared cache entry of this deployment (its Redis prefix).

The strategy's rollback step 3. Caches, throttles, nonces and flag announcements rebuild
themselves; nothing durable lives in Redis. Only keys under ``AAYU_REDIS_PREFIX`` are touched,
so other deployments sharing the Redis server are left alone.
"""

from __future__ import annotations

from aayu_accounts.config import Settings
from aayu_accounts.kit.redis_client import create_redis

BATCH = 500


async def purge(settings: Settings) -> int:
    """Unlink every key under the deployment's prefix; returns how many were removed."""
    prefix = settings.redis_prefix
    if not prefix:
        raise ValueError("refusing to purge without a key prefix")
    client = create_redis(settings)
    if client is None:
        raise ValueError("no Redis configured")
    removed = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=BATCH):
            batch.append(key)
            if len(batch) >= BATCH:
                removed += int(await client.unlink(*batch))
                batch.clear()
        if batch:
            removed += int(await client.unlink(*batch))
    finally:
        await client.aclose()
    return removed
