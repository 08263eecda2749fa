"""``aayu-accounts alerts export``: valid YAML, every severity, runbook anchors that exist,
and PromQL that names only metrics this service declares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from aayu_accounts.cli import app as cli_app
from aayu_accounts.observability import metrics  # noqa: F401 - declares every metric
from tests.test_cli import run_cli

RUNBOOK = Path(__file__).parents[2] / "docs" / "runbook.md"
_METRIC = re.compile(r"\baayu_[a-z_]+\b")


def _declared_samples() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_count", "_sum", "_created"):
            names.add(family.name + suffix)
    return names


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """The real command, run once (starting the CLI costs seconds)."""
    tmp_path = tmp_path_factory.mktemp("export")
    result = run_cli("alerts", "export", "--out-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rules = yaml.safe_load((tmp_path / "out" / "aayu-accounts.rules.yml").read_text())
    routing = yaml.safe_load((tmp_path / "out" / "alertmanager.example.yml").read_text())
    return rules, routing


def test_rules_cover_every_severity_and_name_their_runbook(
    exported: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    rules, _routing = exported
    entries = rules["groups"][0]["rules"]
    by_severity: dict[str, list[str]] = {}
    runbook = RUNBOOK.read_text()
    declared = _declared_samples()
    for entry in entries:
        by_severity.setdefault(entry["labels"]["severity"], []).append(entry["labels"]["key"])
        anchor = entry["annotations"]["runbook_url"].split("#", 1)[1]
        assert f'<a id="{anchor}"></a>' in runbook, anchor
        unknown = set(_METRIC.findall(entry["expr"])) - declared
        assert not unknown, (entry["alert"], unknown)
    assert set(by_severity) == {"critical", "high", "medium", "low"}
    # The strategy's list, by severity.
    assert {"database.down", "auth.down", "billing.payment_failures", "audit.chain_broken"} <= set(
        by_severity["critical"]
    )
    assert {"http.error_rate", "http.response_time", "auth.failed_login_spike"} <= set(
        by_severity["high"]
    )
    assert {"host.disk_usage", "host.memory_usage", "db.slow_queries_increasing"} <= set(
        by_severity["medium"]
    )
    assert "daily_summary" in by_severity["low"]


def test_alertmanager_example_routes_each_severity_and_sends_resolved(
    exported: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _rules, routing = exported
    routes = routing["route"]["routes"]
    matched = {r["matchers"][0] for r in routes}
    assert matched == {f'severity="{s}"' for s in ("critical", "high", "medium", "low")}
    receivers = {r["name"]: r for r in routing["receivers"]}
    for route in routes:
        assert route["receiver"] in receivers
        assert route["repeat_interval"]
    critical = receivers["aayu-critical"]["pagerduty_configs"][0]
    assert critical["send_resolved"] is True


def test_stdout_has_both_documents() -> None:
    result = CliRunner().invoke(cli_app, ["alerts", "export"])
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert "groups" in documents[0]
    assert "route" in documents[1]
