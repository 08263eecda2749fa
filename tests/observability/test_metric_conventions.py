"""Every metric is declared in observability/metrics.py, follows the Prometheus conventions
(``aayu_`` prefix, base units, ``_total`` counters, ratios 0-1) and has only bounded labels:
no user, clinic, address or other high-cardinality label, and route labels are templates."""

from __future__ import annotations

import re
import secrets

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from aayu_accounts.observability import metrics
from tests.fixtures.routes import api_routes

TOKEN = "c" * 40

# Every label name any metric may carry: each takes values from a short, fixed set (a route
# template, a status class, an outcome, a dependency...). "path" is the rollout path
# (new/legacy), never a URL path.
BOUNDED_LABELS = {
    "capability",
    "channel",
    "code",
    "component",
    "currency",
    "dependency",
    "format",
    "kind",
    "method",
    "name",
    "outcome",
    "path",
    "plan",
    "reason",
    "route",
    "scope",
    "severity",
    "source",
    "state",
    "status",
    "status_class",
    "verdict",
    "window",
}
_UNBOUNDED = re.compile(r"user|email|clinic|org|tenant|ip|addr|session|token|_id$|^id$|url")
_UNITS = ("_seconds", "_bytes", "_ratio", "_cents", "_total")


def _declared() -> dict[str, MetricWrapperBase]:
    return {
        name: value for name, value in vars(metrics).items() if isinstance(value, MetricWrapperBase)
    }


def _family(metric: MetricWrapperBase) -> str:
    return str(metric._name)


def _label_names(metric: MetricWrapperBase) -> tuple[str, ...]:
    return tuple(metric._labelnames)


def test_declared_metrics_follow_the_conventions() -> None:
    declared = _declared()
    assert len(declared) >= 40
    for attribute, metric in declared.items():
        name = _family(metric)
        assert name.startswith("aayu_"), attribute
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert not re.search(r"_(ms|millis|milliseconds|percent|pct|kb|mb)(_|$)", name), name
        if isinstance(metric, Histogram):
            assert name.endswith("_seconds"), name  # durations in base units
        if "_ratio" in name:
            assert isinstance(metric, Gauge), name
        for label in _label_names(metric):
            assert label in BOUNDED_LABELS, (name, label)
            assert not _UNBOUNDED.search(label), (name, label)
    counters = [m for m in declared.values() if isinstance(m, Counter)]
    assert counters
    for counter in counters:  # exposed as <name>_total
        assert not _family(counter).endswith("_total"), _family(counter)


def test_every_aayu_metric_in_the_registry_is_declared_in_metrics_module(app: FastAPI) -> None:
    # The app (and so every module that records something) is imported by the fixture.
    declared = {_family(m) for m in _declared().values()}
    registered = {f.name for f in REGISTRY.collect() if f.name.startswith("aayu_")}
    assert registered <= declared, registered - declared


def test_ratios_stay_between_zero_and_one() -> None:
    for metric in _declared().values():
        if not _family(metric).endswith("_ratio"):
            continue
        for family in metric.collect():
            for sample in family.samples:
                assert 0.0 <= sample.value <= 1.0, (sample.name, sample.value)


async def test_label_values_stay_bounded_under_traffic(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"metrics_token": TOKEN})
    # The registry is the process's: labels left by earlier tests' probe routes are not ours.
    before = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    earlier = set(re.findall(r'route="([^"]*)"', before.text))
    marks = [secrets.token_hex(6) for _ in range(6)]
    # Ids in paths, addresses and emails that must never become label values.
    for index, mark in enumerate(marks[:3]):
        await client.get(f"/api/v1/users/{mark}")
        await client.get(f"/no/such/{mark}")
        transport = httpx.ASGITransport(app=app, client=(f"10.9.{index}.{index + 1}", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            await other.post(
                "/api/v1/auth/login",
                json={"email": f"{mark}@clinic-example.org", "password": f"pw-{marks[3]}-x1!"},
            )
    response = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    text = response.text
    for needle in [*marks, "clinic-example", "10.9.", "127.0.0.1"]:
        assert needle not in text, needle
    templates = {r.path for r in api_routes(app)} | {getattr(r, "path", "") for r in app.routes}
    templates.add("unmatched")
    routes = set(re.findall(r'route="([^"]*)"', text))
    assert routes, "no route label at all"
    assert routes - earlier <= templates, routes - earlier - templates
