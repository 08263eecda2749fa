"""Signed service requests: each refusal code of API.md, and what passes."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from aayu_accounts.api_security.settings import ApiSecuritySettings
from aayu_accounts.app import create_app
from aayu_accounts.client.signing import canonical_string, secret_key
from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.models.audit_event import AuditEvent
from aayu_accounts.observability import metrics
from tests.api_security.conftest import SigningClient, create_client

FLAGS = "/api/v1/service/flags/evaluate"


def test_canonical_string_matches_api_md_by_hand() -> None:
    body = b'{"token":"abc"}'
    expected = (
        "1700000000\nnonce-0123456789ab\nPOST\n/api/v1/service/sessions/introspect?x=1\n"
        + hashlib.sha256(body).hexdigest()
    ).encode()
    assert (
        canonical_string(
            timestamp="1700000000",
            nonce="nonce-0123456789ab",
            method="post",
            path="/api/v1/service/sessions/introspect",
            query="x=1",
            body=body,
        )
        == expected
    )
    # The key is the printed secret itself.
    assert secret_key("ab" * 32) == ("ab" * 32).encode()


async def test_a_signed_request_passes(signer: SigningClient) -> None:
    response = await signer.post(FLAGS, {})
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["flags"], dict)


async def test_a_hand_made_signature_passes(signer: SigningClient) -> None:
    """A caller without the SDK, following API.md alone, is accepted."""
    body = json.dumps({"user_id": "u-1"}).encode()
    stamp, nonce = str(clock.unix_now()), "handmade_nonce_1234"
    message = f"{stamp}\n{nonce}\nPOST\n{FLAGS}\n{hashlib.sha256(body).hexdigest()}"
    mac = hmac.new(signer.issued.secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    response = await signer.http.post(
        FLAGS,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Aayu-Key-Id": signer.issued.key_id,
            "X-Aayu-Timestamp": stamp,
            "X-Aayu-Nonce": nonce,
            "X-Aayu-Signature": mac,
        },
    )
    assert response.status_code == 200, response.text


async def test_missing_headers_are_signature_missing(client: httpx.AsyncClient) -> None:
    response = await client.post(FLAGS, json={})
    assert response.status_code == 401
    assert response.json()["code"] == "signature_missing"
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_unknown_key_is_signature_unknown_key(signer: SigningClient) -> None:
    body = b"{}"
    headers = signer.headers("POST", FLAGS, body)
    headers["X-Aayu-Key-Id"] = "ak_" + "0" * 32
    response = await signer.http.post(FLAGS, content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "signature_unknown_key"


async def test_old_and_future_timestamps_are_signature_expired(signer: SigningClient) -> None:
    now = clock.unix_now()
    # A few seconds past the 300 s window: the server reads its clock a moment later, and
    # crossing a second boundary must not bring "now + 301" back inside the window.
    for stamp in (now - 305, now + 305):
        response = await signer.post(FLAGS, {}, timestamp=stamp)
        assert response.status_code == 401
        assert response.json()["code"] == "signature_expired"
    for stamp in (now - 290, now + 290):
        assert (await signer.post(FLAGS, {}, timestamp=stamp)).status_code == 200


async def test_a_changed_body_is_signature_invalid(signer: SigningClient) -> None:
    signed_body = b'{"user_id":"a"}'
    headers = signer.headers("POST", FLAGS, signed_body)
    response = await signer.http.post(
        FLAGS, content=b'{"user_id":"b"}', headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "signature_invalid"


async def test_a_changed_path_or_query_is_signature_invalid(signer: SigningClient) -> None:
    body = b"{}"
    headers = signer.headers("POST", "/api/v1/service/usage", body)
    response = await signer.http.post(FLAGS, content=body, headers=headers)
    assert response.json()["code"] == "signature_invalid"
    headers = signer.headers("POST", FLAGS, body, query="a=1")
    response = await signer.http.post(FLAGS + "?a=2", content=body, headers=headers)
    assert response.json()["code"] == "signature_invalid"


async def test_a_malformed_nonce_is_refused(signer: SigningClient) -> None:
    for nonce in ("short", "x" * 65, "has space in it!!!"):
        response = await signer.post(FLAGS, {}, nonce=nonce)
        assert response.status_code == 401
        assert response.json()["code"] == "signature_invalid"


async def test_a_replayed_nonce_is_signature_replayed(signer: SigningClient) -> None:
    body = b"{}"
    headers = {**signer.headers("POST", FLAGS, body), "Content-Type": "application/json"}
    first = await signer.http.post(FLAGS, content=body, headers=headers)
    again = await signer.http.post(FLAGS, content=body, headers=headers)
    assert first.status_code == 200
    assert again.status_code == 401
    assert again.json()["code"] == "signature_replayed"


async def test_refusals_are_audited_without_the_signature(
    signer: SigningClient, db: Database
) -> None:
    body = b"{}"
    headers = signer.headers("POST", FLAGS, body)
    sent_signature = headers["X-Aayu-Signature"]
    headers["X-Aayu-Signature"] = "0" * 64
    response = await signer.http.post(FLAGS, content=body, headers=headers)
    assert response.json()["code"] == "signature_invalid"
    async with db.session_scope(write=False) as session:
        events = (
            await session.execute(
                select(AuditEvent.outcome, AuditEvent.details, AuditEvent.actor_kind).where(
                    AuditEvent.action == "api_security:signature:invalid"
                )
            )
        ).all()
    assert events, "the refusal was not audited"
    outcome, details, actor_kind = events[-1]
    assert outcome == "denied"
    assert actor_kind == "service"
    assert details["code"] == "signature_invalid"
    assert details["key_id"] == signer.issued.key_id
    dumped = json.dumps(details)
    assert "0" * 64 not in dumped
    assert sent_signature not in dumped
    assert signer.issued.secret not in dumped


def _refusals(code: str) -> float:
    value: float = metrics.SIGNATURE_REFUSALS.labels(code)._value.get()
    return value


async def test_each_refusal_is_counted_under_its_own_code(signer: SigningClient) -> None:
    """Every refusal code of API.md is answered and counted in
    ``aayu_signature_refusals_total{code}``, once per refusal, and only under its own code."""
    codes = (
        "signature_missing",
        "signature_unknown_key",
        "signature_expired",
        "signature_invalid",
        "signature_replayed",
    )
    before = {code: _refusals(code) for code in codes}
    accepted_before = metrics.SIGNED_REQUESTS._value.get()
    body = b"{}"

    def signed(**over: Any) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            **signer.headers("POST", FLAGS, body, **over),
        }

    unknown = signed()
    unknown["X-Aayu-Key-Id"] = "ak_" + "f" * 32
    forged = signed()
    forged["X-Aayu-Signature"] = "0" * 64
    replayed = signed()
    sends = {
        "signature_missing": {"Content-Type": "application/json"},
        "signature_unknown_key": unknown,
        "signature_expired": signed(timestamp=clock.unix_now() - 3600),
        "signature_invalid": forged,
    }
    for code, headers in sends.items():
        response = await signer.http.post(FLAGS, content=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["code"] == code
    assert (await signer.http.post(FLAGS, content=body, headers=replayed)).status_code == 200
    again = await signer.http.post(FLAGS, content=body, headers=replayed)
    assert again.status_code == 401
    assert again.json()["code"] == "signature_replayed"

    assert {code: _refusals(code) - before[code] for code in codes} == dict.fromkeys(codes, 1)
    assert metrics.SIGNED_REQUESTS._value.get() - accepted_before == 1


async def test_a_burst_of_refusals_from_one_address_is_cut_off(
    settings: Settings, db: Database
) -> None:
    """Refused signatures from one IP past the API limit get 429 (with its headers) and are no
    longer audited one by one; a correctly signed call from that IP still passes."""
    application = create_app(settings, database=db)
    application.state.api_security_settings = ApiSecuritySettings(rate_limit_default="3/minute")
    async with LifespanManager(application):
        issued = await create_client(db, "burst-check")
        transport = httpx.ASGITransport(app=application, client=("10.7.0.1", 40020))
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as http:
            forged = [
                await http.post(FLAGS, content=b"{}", headers={"X-Aayu-Key-Id": "ak_x"})
                for _ in range(5)
            ]
            signer = SigningClient(http, issued)
            assert (await signer.post(FLAGS, {})).status_code == 200
    assert [r.json()["code"] for r in forged] == ["signature_missing"] * 3 + ["rate_limited"] * 2
    assert forged[-1].status_code == 429
    assert forged[-1].headers["RateLimit-Limit"] == "3"
    assert int(forged[-1].headers["Retry-After"]) >= 1
    async with db.session_scope(write=False) as session:
        audited = (
            await session.scalars(
                select(AuditEvent.details).where(
                    AuditEvent.action == "api_security:signature:invalid"
                )
            )
        ).all()
    assert [d["code"] for d in audited].count("signature_missing") == 3
