"""Secrets from environment variables, for development only (production refuses it).

``AAYU_SECRET_<NAME>`` holds version 1 (dashes become underscores, upper case), and
``AAYU_SECRET_<NAME>_V<n>`` later versions. ``set`` changes only this process's environment,
which is why this provider is not for anything that must survive a restart.
"""

from __future__ import annotations

import os
import re

from aayu_accounts.crypto.secret_store.base import (
    Secret,
    SecretNotFound,
    SecretStore,
    SecretVersion,
    check_name,
)

PREFIX = "AAYU_SECRET_"


def _variable(name: str, version: int) -> str:
    base = PREFIX + name.replace("-", "_").upper()
    return base if version == 1 else f"{base}_V{version}"


class EnvSecretStore(SecretStore):
    provider = "env"

    def _versions(self, name: str) -> dict[int, str]:
        base = _variable(name, 1)
        pattern = re.compile(re.escape(base) + r"_V(?P<version>[0-9]+)$")
        found: dict[int, str] = {}
        for key, value in os.environ.items():
            if key == base:
                found[1] = value
            elif match := pattern.match(key):
                found[int(match["version"])] = value
        return found

    async def get(self, name: str, version: str | None = None) -> Secret:
        versions = self._versions(check_name(name))
        wanted = int(version) if version is not None else max(versions, default=0)
        if wanted not in versions:
            raise SecretNotFound(name, version)
        return Secret(name, str(wanted), versions[wanted])

    async def set(self, name: str, value: str) -> Secret:
        versions = self._versions(check_name(name))
        version = max(versions, default=0) + 1
        os.environ[_variable(name, version)] = value
        return Secret(name, str(version), value)

    async def list_versions(self, name: str) -> list[SecretVersion]:
        versions = self._versions(check_name(name))
        if not versions:
            raise SecretNotFound(name)
        return [SecretVersion(name, str(v), None) for v in sorted(versions)]
