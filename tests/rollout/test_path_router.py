"""The path router: decisions from the flags, fallback on failure, outcomes recorded."""

from __future__ import annotations

import asyncio

import pytest

from aayu_accounts.api_security.service_api.service import evaluate_flags
from aayu_accounts.errors import NotFound
from aayu_accounts.rollout.bucketing import bucket
from aayu_accounts.rollout.flag.snapshot import FlagDefinition, FlagSnapshot
from aayu_accounts.rollout.flag.store import FlagStore
from aayu_accounts.rollout.outcomes import Capability, RoutePath
from aayu_accounts.rollout.path_router import PathRouter


def store_with(*flags: FlagDefinition, version: int = 5) -> FlagStore:
    store = FlagStore(max_staleness_seconds=60)
    store.install(FlagSnapshot.build(version, flags), source="test")
    return store


def on(key: str, percent: int = 100) -> FlagDefinition:
    return FlagDefinition(key, enabled=True, rollout_percent=percent, bucket_group="v3-rollout")


def test_decisions() -> None:
    router = PathRouter(store_with(on("NEW_AUTH")))
    assert router.decide(Capability.AUTH, "lg_a", has_legacy=True).path is RoutePath.NEW
    documents = router.decide(Capability.DOCUMENTS, "lg_a", has_legacy=True)
    assert (documents.path, documents.reason) == (RoutePath.LEGACY, "flag_off")
    new_only = router.decide(Capability.DOCUMENTS, "user-1", has_legacy=False)
    assert (new_only.path, new_only.reason) == (RoutePath.NEW, "new_only")


def test_percentage_follows_the_shared_bucket() -> None:
    router = PathRouter(store_with(on("NEW_AUTH", 25), on("NEW_DATABASE", 25)))
    for i in range(200):
        subject = f"lg_{i}"
        expected = RoutePath.NEW if bucket("v3-rollout", subject) <= 25 else RoutePath.LEGACY
        assert router.decide(Capability.AUTH, subject, has_legacy=True).path is expected
        # Same group: a user on new auth is on the new database too.
        assert router.decide(Capability.DOCUMENTS, subject, has_legacy=True).path is expected


async def test_stale_snapshot_sends_legacy_users_to_legacy() -> None:
    store = store_with(on("NEW_AUTH"))
    store.max_staleness_seconds = 0.01
    await asyncio.sleep(0.03)
    router = PathRouter(store)
    stale = router.decide(Capability.AUTH, "lg_a", has_legacy=True)
    assert (stale.path, stale.reason) == (RoutePath.LEGACY, "stale_snapshot")
    assert router.decide(Capability.AUTH, "u", has_legacy=False).path is RoutePath.NEW
    # The scribe app's evaluation (POST /api/v1/service/flags/evaluate) answers the same way:
    # the new-path flags read "off" from a stale snapshot.
    fresh = evaluate_flags(store.snapshot, stale=False, user_id="lg_a", org_id=None)
    answered = evaluate_flags(store.snapshot, stale=store.is_stale(), user_id="lg_a", org_id=None)
    assert fresh["NEW_AUTH"] is True
    assert answered["NEW_AUTH"] is False


async def test_fallback_serves_failures_and_counts_them() -> None:
    router = PathRouter(store_with(on("NEW_AUTH"), on("FALLBACK")), new_path_timeout_seconds=0.05)
    decision = router.decide(Capability.AUTH, "lg_a", has_legacy=True)

    async def broken() -> str:
        raise RuntimeError("database down")

    async def slow() -> str:
        await asyncio.sleep(1)
        return "late"

    async def legacy() -> str:
        return "legacy"

    assert await router.serve(decision, broken, legacy) == "legacy"
    assert await router.serve(decision, slow, legacy) == "legacy"
    stats = router.outcomes.window(Capability.AUTH, 60)
    assert (stats.total, stats.errors, stats.timeouts) == (2, 1, 1)


async def test_without_fallback_the_failure_surfaces() -> None:
    router = PathRouter(store_with(on("NEW_AUTH")))
    decision = router.decide(Capability.AUTH, "lg_a", has_legacy=True)

    async def broken() -> str:
        raise RuntimeError("database down")

    async def legacy() -> str:
        return "legacy"

    with pytest.raises(RuntimeError):
        await router.serve(decision, broken, legacy)
    new_only = router.decide(Capability.AUTH, "u", has_legacy=False)
    fallback_router = PathRouter(store_with(on("NEW_AUTH"), on("FALLBACK")))
    with pytest.raises(RuntimeError):
        await fallback_router.serve(new_only, broken, None)


async def test_an_expected_answer_is_neither_failure_nor_fallback() -> None:
    router = PathRouter(store_with(on("NEW_AUTH"), on("FALLBACK")))
    decision = router.decide(Capability.AUTH, "lg_a", has_legacy=True)
    called = []

    async def not_found() -> str:
        raise NotFound("no such thing")

    async def legacy() -> str:
        called.append(True)
        return "legacy"

    with pytest.raises(NotFound):
        await router.serve(decision, not_found, legacy)
    assert called == []
    stats = router.outcomes.window(Capability.AUTH, 60)
    assert (stats.total, stats.errors) == (1, 0)
