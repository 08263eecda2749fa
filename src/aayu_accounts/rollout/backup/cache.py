"""``cache purge``: forget every shared cache entry of this deployment (its Redis prefix).

The strategy's rollback step 3. Caches, throttles, nonces and flag announcements rebuild
themselves; nothing durable lives in Redis. Only keys under ``AAYU_REDIS_PREFIX`` are touched,
so other deployments sharing the Redis server are left alone.
"""

from __future__ import annotations

BATCH = 500


async def purge(redis_url: str, prefix: str) -> int:
    import redis.asyncio as redis_asyncio  # noqa: PLC0415 - only with Redis configured

    if not prefix:
        raise ValueError("refusing to purge without a key prefix")
    client = redis_asyncio.Redis.from_url(redis_url)
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
