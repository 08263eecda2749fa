"""Property-based fuzzing of every operation in ``/openapi.json`` with schemathesis.

Schemathesis generates the cases (valid ones, and invalid ones in its negative mode) from the
document the app serves; they are sent in process through the suite's ASGI client, on the
test's event loop and database, and each response is checked against the same document:

* no 5xx;
* the status code is one the operation documents;
* the content type is the documented one (problem+json for errors);
* the body matches the documented schema, and documented headers are present.

Callers are authenticated so routes are exercised past their 401: a clinic owner's bearer
token, the owner's own clinic and user id in the path, and a service client's signature (the
SDK's signing helper) for ``/api/v1/service/*``. The platform administrators' routes are called
by the (non-admin) owner and so checked up to their documented 403: a real administrator's
rollback would change the flags this process caches for the tests that follow.

Bounded: four examples per operation and mode, no deadline, no example database, derandomized,
so a run costs well under a minute and is the same on every machine. Generation is done once
and reused on the second backend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aayu_accounts.client.signing import secret_key, sign_headers
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from tests.api_security.conftest import create_client
from tests.identity.accounts.helpers import Account
from tests.security.conftest import signed_in

EXAMPLES_PER_MODE = 4
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
SERVICE_PREFIX = "/api/v1/service/"
UNAUTHENTICATED = (
    "/api/v1/auth/",
    "/api/v1/invitations/accept",
    "/api/v1/webhooks/",
    "/api/v1/plans",
)


# Generated once per run and reused on the second backend: generation is most of the cost, and
# the document is the same whatever the database. The owner's ids go in at send time.
_GENERATED: dict[tuple[str, GenerationMode], list[Any]] = {}
OWNER_PATH_PARAMETERS = ("org_id", "user_id")


def generated_cases(operation: Any, mode: GenerationMode) -> list[Any]:
    """Up to EXAMPLES_PER_MODE cases of ``operation`` (generation only, nothing is sent)."""
    key = (operation.label, mode)
    if key in _GENERATED:
        return _GENERATED[key]
    cases: list[Any] = []
    fixed = {name: name for name in OWNER_PATH_PARAMETERS if "{" + name + "}" in operation.path}

    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode, path_parameters=fixed or None))
    def collect(case: Any) -> None:
        cases.append(case)

    try:
        collect()
    except Unsatisfiable:  # nothing to make invalid (an operation without any input)
        assert mode is GenerationMode.NEGATIVE
    _GENERATED[key] = cases
    return cases


def _request(client: httpx.AsyncClient, case: Any) -> httpx.Request:
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url).rstrip("/"))
    headers = {k: v for k, v in kwargs["headers"].items() if k.lower() != "connection"}
    content: bytes | None = None
    if "json" in kwargs:
        content = json.dumps(kwargs["json"]).encode()
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        content = data if isinstance(data, bytes) else str(data).encode()
    return client.build_request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=headers,
        content=content,
    )


# About a minute on a busy machine for the first backend (it generates the cases): more than
# the suite's default per-test timeout allows for.
@pytest.mark.timeout(400)
async def test_every_operation_answers_within_its_schema(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    schema = schemathesis.openapi.from_dict(app.openapi())
    # NUL characters in text are generated too: PostgreSQL cannot store them, and the answer
    # must be a 422 (test_input_hardening.py::test_a_nul_character_in_text_is_refused_not_a_500).
    schema.config.generation.update(allow_x00=True)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 45, [op.label for op in operations]
    issued = await create_client(db, "schemathesis-backend")

    def sign(request: httpx.Request) -> None:
        request.headers.update(
            sign_headers(
                key_id=issued.key_id,
                secret=secret_key(issued.secret),
                method=request.method,
                path=request.url.path,
                query=request.url.query.decode(),
                body=request.content,
                timestamp=clock.unix_now(),
            )
        )

    failures: dict[str, list[str]] = {}
    sent = 0
    owner: Account = await signed_in(client, db)
    for operation in operations:
        # Some cases sign the owner out or change the password: a new owner when that happened.
        if (await client.get("/api/v1/me", headers=owner.auth)).status_code != 200:
            owner = await signed_in(client, db)
        authorize: Callable[[httpx.Request], None] | None = None
        if operation.path.startswith(SERVICE_PREFIX):
            authorize = sign
        elif operation.path.startswith(UNAUTHENTICATED):
            authorize = None
        path_values = {"org_id": owner.org_id, "user_id": owner.user_id}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for case in generated_cases(operation, mode):
                for name in OWNER_PATH_PARAMETERS:
                    if case.path_parameters and name in case.path_parameters:
                        case.path_parameters[name] = path_values[name]
                request = _request(client, case)
                if authorize is not None:
                    authorize(request)
                elif not operation.path.startswith(UNAUTHENTICATED):
                    request.headers.update(owner.auth)
                started = time.perf_counter()
                response = await client.send(request)
                # tests/audit/sweep.py reads the body in the transport, so httpx never times
                # it; schemathesis reads .elapsed.
                response.elapsed = timedelta(seconds=time.perf_counter() - started)
                sent += 1
                try:
                    case.validate_response(response, checks=CHECKS)
                except FailureGroup as group:
                    for failure in group.exceptions:
                        first = str(failure).strip().splitlines()
                        failures.setdefault(operation.label, []).append(
                            f"{mode.value} {response.status_code}: {' | '.join(first[:3])}"
                        )
    assert sent >= len(operations) * EXAMPLES_PER_MODE
    assert failures == {}, "\n".join(f"{k}:\n  " + "\n  ".join(v) for k, v in failures.items())
