"""A captured signed request replayed to a second server process sharing Redis is refused."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from aayu_accounts.client.signing import secret_key, sign_headers
from tests.client.server import server_stack

FLAGS = "/api/v1/service/flags/evaluate"


async def test_a_replay_to_another_instance_is_signature_replayed(
    backend: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("several instances share nonces through Redis, configured on PostgreSQL runs")
    async with server_stack(backend, tmp_path) as stack:
        first, second = stack.server(), stack.server()
        first.start()
        second.start()
        body = json.dumps({"user_id": "u-1"}).encode()
        headers = {
            "Content-Type": "application/json",
            **sign_headers(
                key_id=stack.key_id,
                secret=secret_key(stack.secret),
                method="POST",
                path=FLAGS,
                body=body,
            ),
        }
        async with httpx.AsyncClient(timeout=10) as http:
            accepted = await http.post(first.url + FLAGS, content=body, headers=headers)
            replayed = await http.post(second.url + FLAGS, content=body, headers=headers)
            replayed_same = await http.post(first.url + FLAGS, content=body, headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert replayed.status_code == 401
    assert replayed.json()["code"] == "signature_replayed"
    assert replayed_same.json()["code"] == "signature_replayed"
