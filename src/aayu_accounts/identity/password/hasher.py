"""Argon2id password hashing that never blocks the event loop and cannot exhaust memory.

Each Argon2id computation holds ``argon2_memory_kib`` of RAM (64 MiB by default) for about a
tenth of a second. argon2-cffi releases the GIL, so hashes run in a dedicated pool of
``max_concurrency`` threads: at most that many hashes exist at once, so a flood of sign-ins
costs at most ``max_concurrency * memory`` and the rest of the service keeps answering.

Waiting hashes queue in the pool itself, so a thread that finishes one starts the next at
once, without a round trip through the event loop (a semaphore on the loop left every core
idle for a few loop turns between two hashes — several percent of sign-in throughput, more
when the loop is busy). A waiting hash whose request gives up (cancelled, client gone) is
taken out of the queue before it starts: no doomed work runs.

Passwords are NFKC-normalized before hashing (NIST SP 800-63B 5.1.1.2), so the same password
typed on two keyboards (composed or decomposed accents, full-width digits) verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from aayu_accounts.config import Settings

_T = TypeVar("_T")
# How much lower than the event loop the hashing threads are scheduled (nice steps).
WORKER_NICENESS = 5


def normalize_password(password: str) -> str:
    """The form that is hashed and checked: Unicode NFKC, nothing stripped or truncated."""
    return unicodedata.normalize("NFKC", password)


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's affinity, not the host's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class PasswordHasher:
    """Argon2id with the configured cost, run in a bounded thread pool."""

    def __init__(
        self,
        *,
        memory_kib: int,
        time_cost: int,
        parallelism: int,
        max_concurrency: int | None = None,
    ) -> None:
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=argon2.Type.ID,
        )
        self.max_concurrency = max_concurrency or _usable_cpus()
        self._pool: ThreadPoolExecutor | None = None
        self._dummy_hash: str | None = None
        self._dummy_lock: asyncio.Lock | None = None
        self._worker_ids: set[int] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordHasher:
        return cls(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
            max_concurrency=settings.argon2_max_concurrency,
        )

    @property
    def memory_kib(self) -> int:
        return self._argon2.memory_cost

    @property
    def time_cost(self) -> int:
        return self._argon2.time_cost

    @property
    def parallelism(self) -> int:
        return self._argon2.parallelism

    @property
    def dummy_hash(self) -> str | None:
        """The hash the unknown-user path verifies against (None until prepared)."""
        return self._dummy_hash

    async def prepare(self) -> None:
        """Make the dummy hash now (at start-up) so the first unknown user costs no extra."""
        await self._get_dummy_hash()

    async def hash(self, password: str) -> str:
        """The encoded Argon2id hash of ``password`` (normalized first)."""
        return await self._run(self._argon2.hash, normalize_password(password))

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash``; False (never an error) when malformed."""
        return await self._run(self._verify_sync, stored_hash, normalize_password(password))

    async def verify_dummy(self, password: str) -> bool:
        """The same work as :meth:`verify` against a real hash; always False.

        The unknown-user path of sign-in: a real Argon2id verification with the live
        parameters, so that path costs exactly what a wrong password costs. No sleeps.
        """
        dummy = await self._get_dummy_hash()
        await self.verify(dummy, password)
        return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made with other parameters (re-hash on sign-in)."""
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    def close(self) -> None:
        """Stop the worker threads (at shutdown); running hashes finish first."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def worker_thread_ids(self) -> frozenset[int]:
        """Native ids of the hashing threads started so far (diagnostics, tests)."""
        return frozenset(self._worker_ids)

    def _lower_worker_priority(self) -> None:
        # Hashing threads run a few steps "nicer" than the event loop's thread: when every
        # core is busy hashing, the scheduler still runs the loop at once, so other requests
        # (health checks, signed-in calls) are not delayed; idle CPU still goes to hashing.
        # On Linux a thread id works with PRIO_PROCESS; elsewhere this is a harmless no-op.
        self._worker_ids.add(threading.get_native_id())
        with contextlib.suppress(OSError, AttributeError):
            current = os.getpriority(os.PRIO_PROCESS, 0)
            os.setpriority(os.PRIO_PROCESS, 0, min(19, current + WORKER_NICENESS))

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(stored_hash, password)
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError, ValueError, TypeError):
            # A malformed or foreign hash is a failed sign-in, never a 500.
            return False

    async def _get_dummy_hash(self) -> str:
        if self._dummy_hash is not None:
            return self._dummy_hash
        if self._dummy_lock is None:
            self._dummy_lock = asyncio.Lock()
        async with self._dummy_lock:
            if self._dummy_hash is None:
                # A secret nobody knows, so verify_dummy can never succeed by accident.
                self._dummy_hash = await self.hash(secrets.token_urlsafe(32))
        return self._dummy_hash

    async def _run(self, func: Callable[..., _T], *args: str) -> _T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.max_concurrency,
                thread_name_prefix="argon2",
                initializer=self._lower_worker_priority,
            )
        # Cancelling the awaiting task cancels the pool's future, which drops the work item if
        # no thread has taken it yet (asyncio chains the cancellation).
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, func, *args)
