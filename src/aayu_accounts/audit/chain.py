"""The hash chain: what an event's hash covers, and how hashes link.

Domain separation as in RFC 6962 (Certificate Transparency) §2.1: a leaf is hashed with a 0x00
prefix and an interior node with 0x01, so a leaf can never be passed off as a link (or the
reverse). Each event's leaf hash covers the canonical encoding of its fields; its chain hash is
``SHA-256(0x01 || previous chain hash || leaf hash)``. The first event links to 32 zero bytes.

The sequence number is not in the leaf (as an RFC 6962 leaf does not hold its index): the
position of an event is what the links say, and the verifier checks separately that the stored
numbers run without gaps. This lets the leaf be hashed before the chain lock is taken, so the
lock is held only for the link (computed by the database, see the audit migration).

``hash_version`` is stored with every event and is part of what is hashed, so the encoding can
change later without making old events unverifiable: the verifier picks the encoder by version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aayu_accounts.audit.canonical import (
    JsonValue,
    canonical_bytes,
    canonical_text,
    encode_json_string,
    format_time,
)

HASH_VERSION = 1
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class EventFields:
    """The hashed fields of one event, as stored."""

    event_id: str
    occurred_at: datetime
    actor_kind: str
    actor_id: str | None
    org_id: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: Mapping[str, Any]

    @classmethod
    def of(cls, event: Any) -> EventFields:
        """The fields of an ``AuditEvent`` row (or anything with the same attributes)."""
        return cls(
            event_id=event.id,
            occurred_at=event.occurred_at,
            actor_kind=event.actor_kind,
            actor_id=event.actor_id,
            org_id=event.org_id,
            action=event.action,
            target_type=event.target_type,
            target_id=event.target_id,
            outcome=event.outcome,
            ip=event.ip,
            user_agent=event.user_agent,
            request_id=event.request_id,
            details=event.details or {},
        )


def encode_v1(fields: EventFields) -> bytes:
    """The canonical JSON of version 1's document (see :func:`document_v1`).

    Its keys are fixed, so their canonical order is written out here and only the values are
    encoded: the same bytes as ``canonical_bytes(document_v1(fields))`` (the tests compare
    them), at a fraction of the cost, since every append hashes one.
    """
    texts = []
    for value in (
        fields.action,
        fields.actor_id,
        fields.actor_kind,
        fields.event_id,
        fields.ip,
        fields.org_id,
        fields.outcome,
        fields.request_id,
        fields.target_id,
        fields.target_type,
        fields.user_agent,
    ):
        if value is None:
            texts.append("null")
        elif type(value) is str:
            texts.append(encode_json_string(value))
        else:
            return canonical_bytes(document_v1(fields))  # let the generic encoder judge
    (
        action,
        actor_id,
        actor_kind,
        event_id,
        ip,
        org_id,
        outcome,
        request_id,
        target_id,
        target_type,
        user_agent,
    ) = texts
    text = "".join(
        (
            '{"action":', action,
            ',"actor_id":', actor_id,
            ',"actor_kind":', actor_kind,
            ',"details":', canonical_text(dict(fields.details)),
            ',"id":', event_id,
            ',"ip":', ip,
            ',"org_id":', org_id,
            ',"outcome":', outcome,
            ',"request_id":', request_id,
            ',"target_id":', target_id,
            ',"target_type":', target_type,
            ',"time":"', format_time(fields.occurred_at),
            '","user_agent":', user_agent,
            ',"v":1}',
        )
    )  # fmt: skip
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("lone surrogate in a string") from exc


def document_v1(fields: EventFields) -> dict[str, JsonValue]:
    """What version 1 hashes: the event's fields as one JSON object."""
    return {
        "v": 1,
        "id": fields.event_id,
        "time": format_time(fields.occurred_at),
        "actor_kind": fields.actor_kind,
        "actor_id": fields.actor_id,
        "org_id": fields.org_id,
        "action": fields.action,
        "target_type": fields.target_type,
        "target_id": fields.target_id,
        "outcome": fields.outcome,
        "ip": fields.ip,
        "user_agent": fields.user_agent,
        "request_id": fields.request_id,
        "details": dict(fields.details),
    }


ENCODERS = {1: encode_v1}


class UnknownHashVersion(ValueError):
    pass


def leaf_hash(fields: EventFields, version: int = HASH_VERSION) -> bytes:
    encoder = ENCODERS.get(version)
    if encoder is None:
        raise UnknownHashVersion(f"unknown audit hash version {version}")
    return hashlib.sha256(LEAF_PREFIX + encoder(fields)).digest()


def link(previous_hash: str, leaf: bytes) -> str:
    """The chain hash (hex) of a leaf that follows ``previous_hash`` (hex)."""
    return hashlib.sha256(NODE_PREFIX + bytes.fromhex(previous_hash) + leaf).hexdigest()


def event_hash(previous_hash: str, fields: EventFields, version: int = HASH_VERSION) -> str:
    return link(previous_hash, leaf_hash(fields, version))
