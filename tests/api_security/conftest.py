"""Fixtures for API security: service clients and a signing test client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from aayu_accounts.api_security.service_client import service as client_service
from aayu_accounts.api_security.service_client.schemas import IssuedSecret
from aayu_accounts.audit.service import Actor
from aayu_accounts.client.signing import secret_key, sign_headers
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.kit import clock


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Cheap Argon2 for the sign-ups some tests need; the parameter tests use the real cost.
    return settings.model_copy(update={"argon2_memory_kib": 1024, "argon2_time_cost": 1})


@dataclass
class SigningClient:
    """Sends requests signed with a service client's key (or deliberately mis-signed)."""

    http: httpx.AsyncClient
    issued: IssuedSecret

    def headers(
        self, method: str, path: str, body: bytes, query: str = "", **over: Any
    ) -> dict[str, str]:
        # The (possibly frozen) server clock, so tests that move time still sign in-window.
        over.setdefault("timestamp", clock.unix_now())
        return sign_headers(
            key_id=self.issued.key_id,
            secret=secret_key(self.issued.secret),
            method=method,
            path=path,
            query=query,
            body=body,
            **over,
        )

    async def post(self, path: str, payload: Any, **over: Any) -> httpx.Response:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **self.headers("POST", path, body, **over)}
        return await self.http.post(path, content=body, headers=headers)


async def create_client(db: Database, name: str, **kwargs: Any) -> IssuedSecret:
    async with db.session_scope() as session:
        return await client_service.create_client(
            session, name=name, actor=Actor.system("test"), **kwargs
        )


@pytest_asyncio.fixture(loop_scope="session")
async def issued(app: FastAPI, db: Database) -> IssuedSecret:
    return await create_client(db, "scribe-backend")


@pytest_asyncio.fixture(loop_scope="session")
async def signer(client: httpx.AsyncClient, issued: IssuedSecret) -> SigningClient:
    return SigningClient(client, issued)
