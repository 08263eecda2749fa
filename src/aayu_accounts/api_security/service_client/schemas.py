"""What the CLI prints about service clients (never a secret, except once at creation)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ClientView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    key_id: str
    rate_limit_per_second: int | None
    created_at: datetime
    disabled_at: datetime | None
    live_secrets: int


class IssuedSecret(BaseModel):
    """The one time a secret is shown: at ``clients create`` and ``clients rotate``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str
    secret: str
