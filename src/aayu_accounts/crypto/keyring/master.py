"""The master key: lives in the secret store, wraps every key version kept in the database."""

from __future__ import annotations

from dataclasses import dataclass, field

from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.keyring.purposes import MASTER_KEY_SECRET
from aayu_accounts.crypto.secret_store.base import SecretNotFound, SecretStore


class MasterKeyMissing(Exception):
    """The secret store has no master key, or not the version a wrapped key names."""


@dataclass(frozen=True)
class MasterKeys:
    """Every enabled version of the master key; the newest wraps, any unwraps."""

    by_version: dict[str, bytes] = field(repr=False)
    current_version: str

    @property
    def current(self) -> bytes:
        return self.by_version[self.current_version]

    def get(self, version: str) -> bytes:
        try:
            return self.by_version[version]
        except KeyError:
            raise MasterKeyMissing(f"master key version {version} is not available") from None

    def wrap(self, key: bytes, label: bytes) -> tuple[str, bytes]:
        return self.current_version, primitives.aead_seal(self.current, key, label)

    def unwrap(self, master_version: str, wrapped: bytes, label: bytes) -> bytes:
        return primitives.aead_open(self.get(master_version), wrapped, label)


async def load_master_keys(store: SecretStore) -> MasterKeys:
    """Read the master key's versions. The first ``get`` lets a development store generate it."""
    try:
        newest = await store.get(MASTER_KEY_SECRET)
    except SecretNotFound:
        raise MasterKeyMissing(
            f"the secret store ({store.provider}) has no {MASTER_KEY_SECRET!r}; "
            "create it once with `aayu-accounts keys init-master`"
        ) from None
    keys = {newest.version: primitives.decode_key(newest.value)}
    for listed in await store.list_versions(MASTER_KEY_SECRET):
        if listed.enabled and listed.version not in keys:
            secret = await store.get(MASTER_KEY_SECRET, listed.version)
            keys[secret.version] = primitives.decode_key(secret.value)
    return MasterKeys(keys, newest.version)
