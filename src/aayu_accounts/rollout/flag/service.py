"""Flag administration: every change validated, versioned, audited with old and new values.

Never commits (DESIGN rule 1); the fan-out of a change is announced for commit time (see
``fanout.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.kit import clock
from aayu_accounts.models.feature_flag import FeatureFlag
from aayu_accounts.models.flag_schedule_step import FlagScheduleStep
from aayu_accounts.rollout.flag import fanout, repository
from aayu_accounts.rollout.flag.errors import FlagDependencyInvalid, FlagNotFound
from aayu_accounts.rollout.flag.schemas import (
    FlagUpdate,
    FlagView,
    ScheduleStepIn,
    ScheduleStepOut,
    TargetList,
)


def _state(flag: FeatureFlag) -> dict[str, Any]:
    """The audited state of a flag (ids are opaque; nothing here is personal or secret)."""
    return {
        "enabled": flag.enabled,
        "rollout_percent": flag.rollout_percent,
        "allow": {"user_ids": list(flag.allow_user_ids), "org_ids": list(flag.allow_org_ids)},
        "deny": {"user_ids": list(flag.deny_user_ids), "org_ids": list(flag.deny_org_ids)},
        "requires": list(flag.requires),
        "description": flag.description,
        "owner": flag.owner,
    }


def _step_state(steps: Sequence[FlagScheduleStep]) -> list[dict[str, Any]]:
    return [
        {
            "run_at": s.run_at.isoformat(),
            "enabled": s.enabled,
            "rollout_percent": s.rollout_percent,
        }
        for s in steps
    ]


async def view(session: AsyncSession, flag: FeatureFlag) -> FlagView:
    return _view_of(flag, await repository.steps_of(session, flag.key))


def _view_of(flag: FeatureFlag, steps: Sequence[FlagScheduleStep]) -> FlagView:
    return FlagView(
        key=flag.key,
        enabled=flag.enabled,
        rollout_percent=flag.rollout_percent,
        description=flag.description,
        updated_at=flag.updated_at,
        owner=flag.owner,
        allow=TargetList(user_ids=list(flag.allow_user_ids), org_ids=list(flag.allow_org_ids)),
        deny=TargetList(user_ids=list(flag.deny_user_ids), org_ids=list(flag.deny_org_ids)),
        requires=list(flag.requires),
        bucket_group=flag.bucket_group,
        schedule=[
            ScheduleStepOut(
                id=s.id,
                run_at=s.run_at,
                enabled=s.enabled,
                rollout_percent=s.rollout_percent,
                applied_at=s.applied_at,
                outcome=s.outcome,
            )
            for s in steps
        ],
    )


async def list_flags(session: AsyncSession) -> list[FlagView]:
    # Two queries whatever the number of flags (the operations page lists them all).
    flags = await repository.list_flags(session)
    steps: dict[str, list[FlagScheduleStep]] = {}
    for step in await repository.all_steps(session):
        steps.setdefault(step.flag_key, []).append(step)
    return [_view_of(flag, steps.get(flag.key, [])) for flag in flags]


async def get_flag(session: AsyncSession, key: str) -> FlagView:
    flag = await repository.get_flag(session, key)
    if flag is None:
        raise FlagNotFound(f"There is no flag {key}.")
    return await view(session, flag)


async def _check_requires(session: AsyncSession, key: str, requires: list[str]) -> None:
    known = {f.key: list(f.requires) for f in await repository.list_flags(session)}
    known[key] = requires
    for required in requires:
        if required not in known:
            raise FlagDependencyInvalid(f"{key} cannot require unknown flag {required}.")
    # Depth-first search for a cycle through ``key``.
    stack, seen = list(requires), set()
    while stack:
        current = stack.pop()
        if current == key:
            raise FlagDependencyInvalid(f"{key} would depend on itself.")
        if current not in seen:
            seen.add(current)
            stack.extend(known.get(current, []))


async def update_flag(
    session: AsyncSession,
    key: str,
    change: FlagUpdate,
    *,
    actor: Actor,
    create_missing: bool = True,
) -> FlagView:
    """Apply ``change`` to flag ``key`` (creating it when absent and allowed).

    Raises ``FlagNotFound`` for an absent flag when ``create_missing`` is false and
    ``FlagDependencyInvalid`` for an unknown or cyclic dependency.
    """
    flag = await repository.get_flag(session, key, for_update=True)
    created = flag is None
    if flag is None:
        if not create_missing:
            raise FlagNotFound(f"There is no flag {key}.")
        flag = FeatureFlag(
            key=key,
            enabled=False,
            rollout_percent=0,
            allow_user_ids=[],
            deny_user_ids=[],
            allow_org_ids=[],
            deny_org_ids=[],
            requires=[],
            description="",
            owner="",
            created_at=clock.now(),
            updated_at=clock.now(),
        )
        session.add(flag)
        await session.flush()
    old = _state(flag)
    old_steps = _step_state(await repository.pending_steps_of(session, key))

    if change.requires is not None:
        await _check_requires(session, key, change.requires)
        flag.requires = list(change.requires)
    if change.enabled is not None:
        flag.enabled = change.enabled
    if change.rollout_percent is not None:
        flag.rollout_percent = change.rollout_percent
    if change.allow is not None:
        flag.allow_user_ids = sorted(set(change.allow.user_ids))
        flag.allow_org_ids = sorted(set(change.allow.org_ids))
    if change.deny is not None:
        flag.deny_user_ids = sorted(set(change.deny.user_ids))
        flag.deny_org_ids = sorted(set(change.deny.org_ids))
    if change.description is not None:
        flag.description = change.description
    if change.owner is not None:
        flag.owner = change.owner
    if change.schedule is not None:
        await _replace_pending_steps(session, key, change.schedule)

    new = _state(flag)
    new_steps = _step_state(await repository.pending_steps_of(session, key))
    if not created and old == new and old_steps == new_steps:
        return await view(session, flag)
    flag.updated_at = clock.now()
    await session.flush()
    version = await repository.bump_config_version(session)
    details: dict[str, Any] = {"old": old, "new": new, "config_version": version}
    if old_steps != new_steps:
        details["schedule"] = {"old": old_steps, "new": new_steps}
    await record(
        session,
        AuditAction.FLAG_CREATED if created else AuditAction.FLAG_UPDATED,
        actor=actor,
        target_type="flag",
        target_id=key,
        details=details,
    )
    await fanout.announce(session, version)
    return await view(session, flag)


async def _replace_pending_steps(
    session: AsyncSession, key: str, steps: list[ScheduleStepIn]
) -> None:
    for step in await repository.pending_steps_of(session, key):
        await session.delete(step)
    for step_in in sorted(steps, key=lambda s: s.run_at):
        session.add(
            FlagScheduleStep(
                flag_key=key,
                run_at=step_in.run_at,
                enabled=step_in.enabled,
                rollout_percent=step_in.rollout_percent,
                created_at=clock.now(),
            )
        )
    await session.flush()


async def apply_due_steps(session: AsyncSession) -> list[str]:
    """Apply every scheduled step whose time has come, oldest first; returns the flag keys.

    Each step is applied as an ordinary audited change by the system actor "flag-scheduler".
    """
    applied: list[str] = []
    now = clock.now()
    for step in await repository.due_steps(session, now):
        change = FlagUpdate(enabled=step.enabled, rollout_percent=step.rollout_percent)
        step.applied_at = now
        step.outcome = "applied"
        await session.flush()
        await update_flag(
            session,
            step.flag_key,
            change,
            actor=Actor.system("flag-scheduler"),
            create_missing=False,
        )
        applied.append(step.flag_key)
    return applied


async def cancel_pending_steps(session: AsyncSession, keys: Sequence[str], reason: str) -> int:
    """Void pending steps of ``keys`` (a rollback must not be undone by yesterday's plan)."""
    cancelled = 0
    now = clock.now()
    for key in keys:
        for step in await repository.pending_steps_of(session, key):
            step.applied_at = now
            step.outcome = reason[:100]
            cancelled += 1
    await session.flush()
    return cancelled


# The built-in flags as the migration seeds them: (key, bucket group, requires, percent, text).
BUILTIN_DEFINITIONS: tuple[tuple[str, str | None, tuple[str, ...], int, str], ...] = (
    ("NEW_AUTH", "v3-rollout", (), 0, "Sign-in of legacy users against the new identity store"),
    ("NEW_DATABASE", "v3-rollout", (), 0, "User documents served from the database"),
    ("BILLING", "v3-rollout", ("NEW_DATABASE",), 0, "Subscriptions, invoices, entitlements"),
    ("SHADOW_WRITES", None, (), 100, "Copy every document write to the other store"),
    ("FALLBACK", None, (), 100, "Serve a failed new-path request through the legacy path"),
)


async def ensure_builtin_flags(session: AsyncSession, *, actor: Actor) -> list[str]:
    """Re-create any missing built-in flag, off (e.g. after a partial restore); idempotent."""
    created: list[str] = []
    for key, group, requires, percent, description in BUILTIN_DEFINITIONS:
        if await repository.get_flag(session, key) is not None:
            continue
        now = clock.now()
        session.add(
            FeatureFlag(
                key=key,
                enabled=False,
                rollout_percent=percent,
                allow_user_ids=[],
                deny_user_ids=[],
                allow_org_ids=[],
                deny_org_ids=[],
                requires=list(requires),
                bucket_group=group,
                description=description,
                owner="platform",
                created_at=now,
                updated_at=now,
            )
        )
        await session.flush()
        created.append(key)
    if created:
        version = await repository.bump_config_version(session)
        for key in created:
            await record(
                session,
                AuditAction.FLAG_CREATED,
                actor=actor,
                target_type="flag",
                target_id=key,
                details={"new": {"enabled": False}, "config_version": version},
            )
        await fanout.announce(session, version)
    return created


ROLLBACK_OFF = ("NEW_AUTH", "NEW_DATABASE", "BILLING")
ROLLBACK_ON = "FALLBACK"


async def flag_states(session: AsyncSession) -> dict[str, dict[str, Any]]:
    return {
        f.key: {"enabled": f.enabled, "rollout_percent": f.rollout_percent}
        for f in await repository.list_flags(session)
    }


async def apply_rollback(session: AsyncSession, *, actor: Actor) -> tuple[int, int]:
    """Turn the new-path flags off and FALLBACK fully on, as ONE configuration version.

    One version (not four) so every instance flips all flags in the same reload. Pending
    schedule steps of the new-path flags are voided: yesterday's plan must not turn them back
    on. Returns (config version, schedule steps voided). Each flag's change is audited.
    """
    changed: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for key in (*ROLLBACK_OFF, ROLLBACK_ON):
        flag = await repository.get_flag(session, key, for_update=True)
        if flag is None:
            continue
        old = _state(flag)
        if key == ROLLBACK_ON:
            flag.enabled, flag.rollout_percent = True, 100
        else:
            flag.enabled = False
        new = _state(flag)
        if new != old:
            flag.updated_at = clock.now()
            changed.append((key, old, new))
    voided = await cancel_pending_steps(session, ROLLBACK_OFF, "cancelled: rollback")
    await session.flush()
    version = await repository.bump_config_version(session)
    for key, old, new in changed:
        await record(
            session,
            AuditAction.FLAG_UPDATED,
            actor=actor,
            target_type="flag",
            target_id=key,
            details={"old": old, "new": new, "config_version": version, "cause": "rollback"},
        )
    await fanout.announce(session, version)
    return version, voided
