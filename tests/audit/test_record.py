"""Recording: fields, context, the chain link, same-transaction semantics, secrets refused."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from aayu_accounts.audit import Actor, AuditAction, record
from aayu_accounts.audit.actions import ACTION_PATTERN
from aayu_accounts.audit.chain import GENESIS_HASH, HASH_VERSION, EventFields, event_hash
from aayu_accounts.audit.repository import chain_head
from aayu_accounts.audit.service import SecretInAuditDetails
from aayu_accounts.db import Database
from aayu_accounts.kit.asgi import client_ip_var, request_id_var, user_agent_var
from aayu_accounts.models.audit_event import AuditEvent


def test_every_action_is_area_subject_verb() -> None:
    values = [action.value for action in AuditAction]
    assert len(values) == len(set(values))
    for value in values:
        assert ACTION_PATTERN.match(value), value
    for required in ("BRUTE_FORCE_DETECTED", "INVALID_SIGNATURE", "KEY_ROTATED"):
        assert required in AuditAction.__members__
    assert "ROLLBACK_EXECUTED" in AuditAction.__members__
    assert AuditAction.EVENTS_EXPORTED.area == "audit"


def test_actor_constructors() -> None:
    assert Actor.user("u1") == Actor("user", "u1")
    assert Actor.service("c1") == Actor("service", "c1")
    assert Actor.system() == Actor("system", "system")
    assert Actor.system("retention") == Actor("system", "retention")
    assert Actor.anonymous() == Actor("anonymous", None)


async def test_record_writes_fields_context_and_links_the_chain(db: Database) -> None:
    tokens = (
        client_ip_var.set("203.0.113.7"),
        user_agent_var.set("pytest-agent"),
        request_id_var.set("req-12345678"),
    )
    try:
        async with db.session_scope() as session:
            before = await chain_head(session)
            first = await record(
                session,
                AuditAction.MEMBER_ROLE_CHANGED,
                actor=Actor.user("user-1"),
                org_id="org-1",
                target_type="membership",
                target_id="user-2",
                details={"old": {"role": "clinician"}, "new": {"role": "admin"}, "ratio": 0.1},
            )
            second = await record(session, AuditAction.KEY_ROTATED, actor=Actor.system())
    finally:
        request_id_var.reset(tokens[2])
        user_agent_var.reset(tokens[1])
        client_ip_var.reset(tokens[0])

    async with db.session_scope(write=False) as session:
        stored = (await session.scalars(select(AuditEvent).where(AuditEvent.id == first.id))).one()
        assert stored.action == "identity:member:role_changed"
        assert (stored.actor_kind, stored.actor_id) == ("user", "user-1")
        assert (stored.org_id, stored.target_type, stored.target_id) == (
            "org-1",
            "membership",
            "user-2",
        )
        assert stored.outcome == "success"
        assert (stored.ip, stored.user_agent, stored.request_id) == (
            "203.0.113.7",
            "pytest-agent",
            "req-12345678",
        )
        assert stored.details == {
            "old": {"role": "clinician"},
            "new": {"role": "admin"},
            "ratio": 0.1,
        }
        assert stored.hash_version == HASH_VERSION
        expected_prev = before.hash if before else GENESIS_HASH
        assert stored.prev_hash == expected_prev
        assert stored.sequence == (before.sequence + 1 if before else 1)
        # The hash recomputed from what the database gives back equals the one written.
        assert stored.hash == event_hash(stored.prev_hash, EventFields.of(stored))
        assert second.sequence == stored.sequence + 1
        assert second.prev_hash == stored.hash


async def test_rolled_back_action_leaves_no_event(db: Database) -> None:
    async with db.session_scope(write=False) as session:
        count_before = await session.scalar(select(func.count()).select_from(AuditEvent))

    class Boom(Exception):
        pass

    async def failing_action() -> None:
        async with db.session_scope() as session:
            await record(session, AuditAction.ORG_CREATED, actor=Actor.user("u"), org_id="o")
            raise Boom

    with pytest.raises(Boom):
        await failing_action()

    async with db.session_scope(write=False) as session:
        count_after = await session.scalar(select(func.count()).select_from(AuditEvent))
    assert count_after == count_before

    # And the chain continues cleanly after the rollback.
    async with db.session_scope() as session:
        head = await chain_head(session)
        event = await record(session, AuditAction.ORG_CREATED, actor=Actor.user("u"))
        assert event.prev_hash == (head.hash if head else GENESIS_HASH)


@pytest.mark.parametrize(
    "details",
    [
        {"password": "hunter2"},
        {"new": {"session_token": "abc"}},
        {"totp_code": "123456"},
        {"items": [{"client_secret": "x"}]},
    ],
)
async def test_secret_detail_keys_are_refused(db: Database, details: dict[str, object]) -> None:
    async with db.session_scope() as session:
        with pytest.raises(SecretInAuditDetails):
            await record(
                session, AuditAction.PASSWORD_CHANGED, actor=Actor.user("u"), details=details
            )


async def test_ids_naming_secrets_are_allowed_and_bad_values_refused(db: Database) -> None:
    async with db.session_scope() as session:
        event = await record(
            session,
            AuditAction.SESSION_REVOKED,
            actor=Actor.user("u"),
            details={"session_token_id": "s-1"},
        )
        assert event.details == {"session_token_id": "s-1"}
        with pytest.raises(ValueError, match="NaN"):
            await record(
                session, AuditAction.FLAG_UPDATED, actor=Actor.system(), details={"x": float("nan")}
            )
        with pytest.raises(ValueError, match="outcome"):
            await record(session, AuditAction.FLAG_UPDATED, actor=Actor.system(), outcome="meh")


def test_the_migrations_lock_function_uses_the_same_key() -> None:
    from aayu_accounts.audit.repository import CHAIN_LOCK_KEY
    from tests.audit.conftest import audit_migration

    assert f"pg_advisory_xact_lock({CHAIN_LOCK_KEY})" in audit_migration().PG_APPEND_FUNCTION
