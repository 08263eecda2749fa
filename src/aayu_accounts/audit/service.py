"""Recording audit events: ``await audit.record(session, AuditAction.X, actor=..., ...)``.

The event is written in the caller's transaction (flush, never commit): an action that rolls
back leaves no event, and an event is never lost when its action commits. Appends are
serialized by the chain lock (see repository.py), held until the caller's transaction ends,
so record the event late in a unit of work, just before it is committed.

IP, user agent and request id come from the request context (``kit.asgi`` contextvars), so a
service never passes them around. Details hold old and new values that are not secret; keys
that name secrets are refused outright, so a slip fails in the tests instead of leaking.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit import repository
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.canonical import normalize
from aayu_accounts.audit.chain import GENESIS_HASH, HASH_VERSION, EventFields, event_hash
from aayu_accounts.kit import clock
from aayu_accounts.kit.asgi import client_ip_var, request_id_var, user_agent_var
from aayu_accounts.kit.ids import new_id
from aayu_accounts.models.audit_event import AuditEvent

ActorKind = Literal["user", "service", "system", "anonymous"]
OUTCOMES = frozenset({"success", "failure", "denied", "error"})

# Detail keys that name a secret. An ``_id`` suffix is allowed (``session_id`` names a row).
_SECRET_KEY = re.compile(
    r"password|passwd|secret|token|totp|otp|api_?key|private_?key|recovery_?code|signature",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, a service client, the system itself, or nobody signed in."""

    kind: ActorKind
    id: str | None

    @classmethod
    def user(cls, user_id: str) -> Actor:
        return cls("user", user_id)

    @classmethod
    def service(cls, client_id: str) -> Actor:
        return cls("service", client_id)

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls("system", name)

    @classmethod
    def anonymous(cls) -> Actor:
        return cls("anonymous", None)


class SecretInAuditDetails(ValueError):
    """A detail key names a secret: audit rows must never hold one."""


def _check_details(details: Any, path: str = "details") -> None:
    if isinstance(details, dict):
        for key, value in details.items():
            if _SECRET_KEY.search(key) and not key.endswith("_id"):
                raise SecretInAuditDetails(f"{path}.{key} looks like a secret")
            _check_details(value, f"{path}.{key}")
    elif isinstance(details, list):
        for item in details:
            _check_details(item, path)


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


async def record(
    session: AsyncSession,
    action: AuditAction,
    *,
    actor: Actor,
    org_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: str = "success",
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain in the caller's transaction and return it (flushed).

    Raises ``SecretInAuditDetails`` for a detail key that names a secret, ``ValueError`` or
    ``TypeError`` for details with no exact JSON form (NaN, huge integers, arbitrary objects)
    and for an unknown ``outcome``.
    """
    if not isinstance(action, AuditAction):
        raise TypeError("action must be an AuditAction")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    clean = normalize(dict(details or {}))
    assert isinstance(clean, dict)
    _check_details(clean)

    await repository.lock_chain(session)
    head = await repository.chain_head(session)
    previous = head.hash if head else GENESIS_HASH
    event = AuditEvent(
        id=new_id(),
        sequence=(head.sequence + 1) if head else 1,
        occurred_at=clock.now(),
        actor_kind=actor.kind,
        actor_id=_clip(actor.id, 100),
        org_id=org_id,
        action=action.value,
        target_type=_clip(target_type, 50),
        target_id=_clip(target_id, 200),
        outcome=outcome,
        ip=_clip(client_ip_var.get(), 64),
        user_agent=_clip(user_agent_var.get(), 300),
        request_id=_clip(request_id_var.get(), 128),
        details=clean,
        hash_version=HASH_VERSION,
        prev_hash=previous,
    )
    event.hash = event_hash(previous, EventFields.of(event))
    session.add(event)
    await session.flush()
    return event
