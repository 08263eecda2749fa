"""Creating, rotating, disabling and looking up service clients.

The secret is 256 random bits printed once as 64 hex characters; the database keeps it only
encrypted under the keyring's client-secret key (it must be recoverable: verifying an HMAC
needs the secret itself). Rotation adds a secret and gives the old ones an end of life, so a
client can be redeployed with the new secret while the old one still verifies.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.api_security.service_client import changes, repository
from aayu_accounts.api_security.service_client.errors import (
    ClientDisabled,
    ClientNameTaken,
    ClientNotFound,
    InvalidClientName,
)
from aayu_accounts.api_security.service_client.schemas import ClientView, IssuedSecret
from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.kit import clock
from aayu_accounts.models.service_client import ServiceClient
from aayu_accounts.models.service_client_secret import ServiceClientSecret

SECRET_BYTES = 32  # 256 bits
KEY_ID_PREFIX = "ak_"
MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class ClientCredentials:
    """What the signature verifier needs about one key id (secrets decrypted, in memory)."""

    client_id: str
    name: str
    key_id: str
    disabled: bool
    rate_limit_per_second: int | None
    # (HMAC key, end of life or None), newest first.
    secrets: tuple[tuple[bytes, datetime | None], ...]

    def keys_valid_at(self, now: datetime) -> list[bytes]:
        return [key for key, ends in self.secrets if ends is None or ends > now]


def check_name(name: str) -> None:
    """Refuse, never rewrite: a name is stored exactly as given or not at all."""
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidClientName(f"A name has 1 to {MAX_NAME_LENGTH} characters, not only spaces.")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in name):
        raise InvalidClientName("A name may not contain control or format characters.")


def _view(client: ServiceClient, live: int) -> ClientView:
    return ClientView(
        id=client.id,
        name=client.name,
        key_id=client.key_id,
        rate_limit_per_second=client.rate_limit_per_second,
        created_at=client.created_at,
        disabled_at=client.disabled_at,
        live_secrets=live,
    )


async def _issue_secret(session: AsyncSession, client: ServiceClient) -> str:
    secret = secrets.token_hex(SECRET_BYTES)
    row = ServiceClientSecret(client_id=client.id, created_at=clock.now())
    row.secret = secret
    await repository.add_secret(session, row)
    return secret


async def create_client(
    session: AsyncSession,
    *,
    name: str,
    actor: Actor,
    rate_limit_per_second: int | None = None,
) -> IssuedSecret:
    """Create a client and its first secret. Raises ``ClientNameTaken``, ``InvalidClientName``."""
    check_name(name)
    if rate_limit_per_second is not None and rate_limit_per_second < 1:
        raise InvalidClientName("The rate limit is at least 1 request per second.")
    if await repository.by_name(session, name) is not None:
        raise ClientNameTaken(f"A service client named {name!r} exists.")
    client = await repository.add(
        session,
        ServiceClient(
            name=name,
            key_id=KEY_ID_PREFIX + secrets.token_hex(16),
            rate_limit_per_second=rate_limit_per_second,
        ),
    )
    secret = await _issue_secret(session, client)
    await record(
        session,
        AuditAction.SERVICE_CLIENT_CREATED,
        actor=actor,
        target_type="service_client",
        target_id=client.id,
        details={
            "name": name,
            "key_id": client.key_id,
            "rate_limit_per_second": rate_limit_per_second,
        },
    )
    return IssuedSecret(key_id=client.key_id, secret=secret)


async def _get(session: AsyncSession, name: str) -> ServiceClient:
    client = await repository.by_name(session, name)
    if client is None:
        raise ClientNotFound(f"No service client named {name!r}.")
    return client


async def rotate_client(
    session: AsyncSession, *, name: str, actor: Actor, grace_seconds: int
) -> IssuedSecret:
    """A new secret; older ones verify for ``grace_seconds`` more (never longer than before)."""
    client = await _get(session, name)
    if client.disabled_at is not None:
        raise ClientDisabled(f"The service client {name!r} is disabled.")
    now = clock.now()
    retire_at = now + timedelta(seconds=grace_seconds)
    for old in await repository.live_secrets(session, client.id, now):
        if old.expires_at is None or old.expires_at > retire_at:
            old.expires_at = retire_at
    secret = await _issue_secret(session, client)
    # Every instance drops its cached secrets on commit: the new one verifies at once.
    changes.mark(session, client.key_id)
    await record(
        session,
        AuditAction.SERVICE_CLIENT_ROTATED,
        actor=actor,
        target_type="service_client",
        target_id=client.id,
        details={"name": name, "key_id": client.key_id, "grace_seconds": grace_seconds},
    )
    return IssuedSecret(key_id=client.key_id, secret=secret)


async def disable_client(session: AsyncSession, *, name: str, actor: Actor) -> ClientView:
    """Stop accepting the client's signatures (every instance as soon as this commits; the
    client cache's lifetime bounds it should the Redis message be lost)."""
    client = await _get(session, name)
    if client.disabled_at is None:
        client.disabled_at = clock.now()
        await session.flush()
        changes.mark(session, client.key_id)
        await record(
            session,
            AuditAction.SERVICE_CLIENT_DISABLED,
            actor=actor,
            target_type="service_client",
            target_id=client.id,
            details={"name": name, "key_id": client.key_id},
        )
    return _view(client, 0)


async def list_clients(session: AsyncSession) -> list[ClientView]:
    now = clock.now()
    views = []
    for client in await repository.all_clients(session):
        live = (
            0 if client.disabled_at else len(await repository.live_secrets(session, client.id, now))
        )
        views.append(_view(client, live))
    return views


async def credentials(session: AsyncSession, key_id: str) -> ClientCredentials | None:
    """The client behind ``key_id`` with its live secrets decrypted; None when unknown."""
    client = await repository.by_key_id(session, key_id)
    if client is None:
        return None
    rows = await repository.live_secrets(session, client.id, clock.now())
    keys = []
    for row in rows:
        secret = row.secret
        if secret is not None:
            keys.append((secret.encode("utf-8"), row.expires_at))
    return ClientCredentials(
        client_id=client.id,
        name=client.name,
        key_id=client.key_id,
        disabled=client.disabled_at is not None,
        rate_limit_per_second=client.rate_limit_per_second,
        secrets=tuple(keys),
    )
