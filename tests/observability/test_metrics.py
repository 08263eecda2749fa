"""/metrics: Prometheus text, token-protected outside development, strategy metrics present."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from aayu_accounts.config import Environment, Settings


async def test_metrics_need_the_token_outside_development(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


async def test_metrics_with_token_expose_latency_histogram_with_1s_and_3s_buckets(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    settings: Settings = app.state.settings
    app.state.settings = settings.model_copy(update={"metrics_token": "t" * 40})
    await client.get("/health")
    response = await client.get("/metrics", headers={"authorization": "Bearer " + "t" * 40})
    assert response.status_code == 200
    text = response.text
    buckets = [
        line for line in text.splitlines() if "aayu_http_request_duration_seconds_bucket" in line
    ]
    assert any('le="1.0"' in line for line in buckets)
    assert any('le="3.0"' in line for line in buckets)
    assert 'route="/health"' in text
    assert "aayu_process_start_time_seconds" in text
    assert "aayu_db_query_duration_seconds" in text
    assert "aayu_job_queue_depth" in text


async def test_wrong_token_is_refused(app: FastAPI, client: httpx.AsyncClient) -> None:
    settings: Settings = app.state.settings
    app.state.settings = settings.model_copy(update={"metrics_token": "t" * 40})
    response = await client.get("/metrics", headers={"authorization": "Bearer wrong"})
    assert response.status_code == 401


async def test_development_without_a_token_is_open_and_with_one_needs_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    settings: Settings = app.state.settings
    app.state.settings = settings.model_copy(
        update={"env": Environment.DEVELOPMENT, "metrics_token": None}
    )
    assert app.state.settings.is_development
    assert (await client.get("/metrics")).status_code == 200
    app.state.settings = settings.model_copy(
        update={"env": Environment.DEVELOPMENT, "metrics_token": "d" * 40}
    )
    assert (await client.get("/metrics")).status_code == 401
    ok = await client.get("/metrics", headers={"authorization": "Bearer " + "d" * 40})
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("text/plain; version=")
