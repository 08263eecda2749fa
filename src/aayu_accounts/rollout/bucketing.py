"""Unleash-compatible percentage bucketing.

A user's bucket is ``murmur3_x86_32(f"{group_id}:{stickiness_id}", seed=0)`` taken unsigned,
``% 100 + 1`` -- exactly what Unleash's SDKs compute (group first: the Python client once had
the order reversed and silently moved users between buckets). A flag is on for the user when
``percent > 0 and bucket <= percent``, so raising the percentage only ever adds users, and a
user's bucket for a flag never changes. ``group_id`` defaults to the flag key.
"""

from __future__ import annotations

import mmh3

BUCKET_COUNT = 100
# The seed of Unleash's "normalizedValue"; variants use another (86028157), flags use 0.
UNLEASH_SEED = 0


def bucket(group_id: str, stickiness_id: str) -> int:
    """The user's bucket for ``group_id``, in 1..100."""
    digest = mmh3.hash(f"{group_id}:{stickiness_id}", seed=UNLEASH_SEED, signed=False)
    return int(digest) % BUCKET_COUNT + 1


def in_rollout(group_id: str, stickiness_id: str, percent: int) -> bool:
    """Whether ``stickiness_id`` falls inside the first ``percent`` buckets of ``group_id``."""
    if percent <= 0:
        return False
    if percent >= BUCKET_COUNT:
        return True
    return bucket(group_id, stickiness_id) <= percent
