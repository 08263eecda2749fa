"""Argon2id hashing: the strategy's parameters, upgrades, malformed hashes, the dummy path,
and the bound on concurrent hashes that keeps the event loop and memory safe."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import argon2
import pytest

from aayu_accounts.config import Settings
from aayu_accounts.identity.password import PasswordHasher
from aayu_accounts.identity.password.hasher import WORKER_NICENESS

# Tests run at a tiny cost; only the parameter test below uses the real defaults.
CHEAP = {"memory_kib": 1024, "time_cost": 1, "parallelism": 1}


def cheap_hasher(**overrides: int) -> PasswordHasher:
    return PasswordHasher(**{**CHEAP, **overrides})


async def test_default_parameters_are_argon2id_64mib_t3_p1() -> None:
    settings = Settings()
    assert (settings.argon2_memory_kib, settings.argon2_time_cost) == (65536, 3)
    assert settings.argon2_parallelism == 1
    hasher = PasswordHasher.from_settings(settings)
    try:
        encoded = await hasher.hash("a long and unremarkable passphrase")
        params = argon2.extract_parameters(encoded)
        assert params.type is argon2.Type.ID
        assert (params.memory_cost, params.time_cost, params.parallelism) == (65536, 3, 1)
        assert encoded.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
        assert not hasher.needs_rehash(encoded)
    finally:
        hasher.close()


async def test_settings_lower_the_cost_for_tests() -> None:
    settings = Settings(argon2_memory_kib=1024, argon2_time_cost=1, argon2_max_concurrency=3)
    hasher = PasswordHasher.from_settings(settings)
    assert (hasher.memory_kib, hasher.time_cost, hasher.parallelism) == (1024, 1, 1)
    assert hasher.max_concurrency == 3
    encoded = await hasher.hash("x")
    assert argon2.extract_parameters(encoded).memory_cost == 1024
    hasher.close()


async def test_hash_verifies_and_differs_each_time() -> None:
    hasher = cheap_hasher()
    first = await hasher.hash("correct horse battery staple")
    second = await hasher.hash("correct horse battery staple")
    assert first != second  # a fresh salt every time
    assert await hasher.verify(first, "correct horse battery staple")
    assert await hasher.verify(second, "correct horse battery staple")
    assert not await hasher.verify(first, "correct horse battery stapler")
    assert not await hasher.verify(first, "")
    hasher.close()


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a hash",
        "$argon2id$",
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$!!notbase64!!",
        "$2b$12$KIXQJ8v8Qk3p9p1Zq2h1UeN0l9E0o7n3aQO4r1c8mQk9yF3h6Vf1e",  # bcrypt
        "$argon2id$v=19$m=999999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
    ],
)
async def test_verify_never_raises_on_a_malformed_hash(stored: str) -> None:
    hasher = cheap_hasher()
    assert await hasher.verify(stored, "whatever it is") is False
    assert hasher.needs_rehash(stored) is True
    hasher.close()


async def test_needs_rehash_when_parameters_change() -> None:
    old = cheap_hasher()
    encoded = await old.hash("a passphrase to upgrade")
    assert not old.needs_rehash(encoded)
    for changed in ({"memory_kib": 2048}, {"time_cost": 2}, {"parallelism": 2}):
        newer = cheap_hasher(**changed)
        assert newer.needs_rehash(encoded), changed
        # The old hash still verifies under the new hasher, so sign-in can upgrade it.
        assert await newer.verify(encoded, "a passphrase to upgrade")
        upgraded = await newer.hash("a passphrase to upgrade")
        assert not newer.needs_rehash(upgraded)
        newer.close()
    old.close()


async def test_passwords_are_nfkc_normalized_and_never_truncated() -> None:
    hasher = cheap_hasher()
    composed = "caf\u00e9 au lait tr\u00e8s chaud"
    decomposed = "cafe\u0301 au lait tre\u0300s chaud"
    assert await hasher.verify(await hasher.hash(composed), decomposed)
    fullwidth = "\uff50\uff41\uff53\uff53\uff11\uff12\uff13"  # full-width "pass123"
    assert await hasher.verify(await hasher.hash("pass123"), fullwidth)
    long_password = "x" * 127 + "a"
    encoded = await hasher.hash(long_password)
    assert not await hasher.verify(encoded, "x" * 127 + "b")
    assert not await hasher.verify(encoded, "x" * 127)
    assert await hasher.verify(encoded, long_password)
    hasher.close()


async def test_verify_dummy_is_a_real_verification_with_live_parameters() -> None:
    hasher = cheap_hasher(memory_kib=2048)
    await hasher.prepare()
    dummy = hasher.dummy_hash
    assert dummy is not None
    params = argon2.extract_parameters(dummy)
    assert (params.type, params.memory_cost, params.time_cost) == (argon2.Type.ID, 2048, 1)
    assert not hasher.needs_rehash(dummy)
    for guess in ("", "password", dummy, "a" * 128):
        assert await hasher.verify_dummy(guess) is False
    assert hasher.dummy_hash == dummy  # made once, at start-up
    hasher.close()


async def test_verify_dummy_prepares_itself_when_not_prepared() -> None:
    hasher = cheap_hasher()
    assert hasher.dummy_hash is None
    results = await asyncio.gather(*(hasher.verify_dummy("x") for _ in range(5)))
    assert results == [False] * 5
    assert hasher.dummy_hash is not None
    hasher.close()


class CountingHasher(PasswordHasher):
    """Real hashing, counting how many verifications run at the same moment."""

    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.finished = 0
        self.all_finished = threading.Event()
        self.expected = 0

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return super()._verify_sync(stored_hash, password)
        finally:
            with self.lock:
                self.running -= 1
                self.finished += 1
                if self.finished == self.expected:
                    self.all_finished.set()


async def test_concurrent_hashes_are_bounded() -> None:
    # Other tests' hashers may still have threads alive: count only the ones this one starts.
    existing = set(threading.enumerate())
    hasher = CountingHasher(memory_kib=8192, time_cost=2, parallelism=1, max_concurrency=2)
    encoded = await hasher.hash("a passphrase under load")
    results = await asyncio.gather(
        *(hasher.verify(encoded, "a passphrase under load") for _ in range(12))
    )
    assert all(results)
    assert hasher.peak == 2
    argon2_threads = [
        t for t in set(threading.enumerate()) - existing if t.name.startswith("argon2")
    ]
    assert len(argon2_threads) <= 2
    hasher.close()


async def test_waiting_hashes_start_without_the_event_loop() -> None:
    # Queued hashes go from one to the next inside the pool: with the loop's thread blocked
    # (as a busy loop would be), all six still finish. A semaphore on the loop would let
    # only the first run and leave the core idle until the loop came back.
    hasher = CountingHasher(**CHEAP, max_concurrency=1)
    encoded = await hasher.hash("queued passphrase")
    hasher.expected = 6
    waiting = [asyncio.ensure_future(hasher.verify(encoded, "queued passphrase")) for _ in range(6)]
    await asyncio.sleep(0)  # each task submits its hash, then awaits it
    finished_while_blocked = hasher.all_finished.wait(timeout=30)  # blocks the loop's thread
    assert finished_while_blocked, hasher.finished
    assert all(await asyncio.gather(*waiting))
    hasher.close()


async def test_a_cancelled_waiting_hash_never_runs() -> None:
    hasher = CountingHasher(**CHEAP, max_concurrency=1)
    encoded = await hasher.hash("cancelled passphrase")
    gate = threading.Event()
    # The only thread is held busy, so the second verification waits in the queue.
    blocker = asyncio.get_running_loop().run_in_executor(hasher._pool, gate.wait, 30)
    doomed = asyncio.ensure_future(hasher.verify(encoded, "cancelled passphrase"))
    await asyncio.sleep(0)
    doomed.cancel()
    # asyncio passes the cancellation on to the pool's future in a callback of the next loop
    # iteration; only then is the work item dropped. Freeing the thread before that (as the
    # test once did) lets it take the item first under load: a race of the test, not of the
    # hasher, whose callers' cancellations come long before a thread frees up.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gate.set()
    await blocker
    kept = await hasher.verify(encoded, "cancelled passphrase")
    assert kept
    assert doomed.cancelled()
    assert hasher.finished == 1  # only the kept one ran
    hasher.close()


async def test_hashing_does_not_block_the_event_loop() -> None:
    # Each hash here takes tens of milliseconds; run on the loop, a tick would wait that long.
    # One hashing thread leaves a core for the loop, so only blocking (not CPU contention) shows.
    hasher = PasswordHasher(memory_kib=32768, time_cost=2, parallelism=1, max_concurrency=1)
    started = time.perf_counter()
    single = await hasher.hash("calibration")
    single_seconds = time.perf_counter() - started
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(hasher.verify(single, "calibration") for _ in range(6)))
    stop.set()
    await task
    assert gaps
    assert max(gaps) < max(single_seconds / 2, 0.02), (max(gaps), single_seconds)
    hasher.close()


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX thread priorities")
async def test_hashing_threads_yield_to_the_event_loop() -> None:
    hasher = cheap_hasher(max_concurrency=2)
    await asyncio.gather(*(hasher.hash("x") for _ in range(4)))
    loop_priority = os.getpriority(os.PRIO_PROCESS, 0)
    assert hasher.worker_thread_ids
    for thread_id in hasher.worker_thread_ids:
        expected = min(19, loop_priority + WORKER_NICENESS)
        assert os.getpriority(os.PRIO_PROCESS, thread_id) == expected
    assert os.getpriority(os.PRIO_PROCESS, 0) == loop_priority  # the loop's thread untouched
    hasher.close()
