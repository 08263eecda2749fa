"""The alert rules as Prometheus sees them, and an Alertmanager routing example.

Generated from :data:`.rules.RULES` and :data:`.rules.BREAKER_ALERTS`, so the rules an
operator loads into Prometheus are the ones the leader evaluates in-process.
"""

from __future__ import annotations

from typing import Any

import yaml

from aayu_accounts.observability.alert.rules import (
    BREAKER_ALERTS,
    DAILY_SUMMARY_RUNBOOK,
    RULES,
    promql,
)
from aayu_accounts.observability.alert.severity import Severity, runbook_link

# Alertmanager timing per severity: (group_wait, group_interval, repeat_interval).
_TIMING = {
    Severity.CRITICAL: ("10s", "1m", "15m"),
    Severity.HIGH: ("30s", "5m", "1h"),
    Severity.MEDIUM: ("5m", "30m", "4h"),
    Severity.LOW: ("1h", "24h", "24h"),
}


def _alert_name(key: str) -> str:
    return "Aayu" + "".join(part.capitalize() for part in key.replace(".", "_").split("_"))


def prometheus_rules(runbook_base: str = "") -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    covered = set()
    for rule in RULES:
        covered.add(rule.key)
        rules.append(
            {
                "alert": _alert_name(rule.key),
                "expr": promql(rule),
                "for": rule.for_,
                "labels": {"severity": rule.severity.value, "key": rule.key},
                "annotations": {
                    "summary": rule.summary,
                    "runbook_url": runbook_base + runbook_link(rule.runbook),
                },
            }
        )
    for dependency, (key, severity, summary, runbook) in BREAKER_ALERTS.items():
        if key in covered:
            continue
        rules.append(
            {
                "alert": _alert_name(key),
                "expr": f'max(aayu_circuit_breaker_state{{dependency="{dependency}"}}) == 2',
                "for": "1m",
                "labels": {"severity": severity.value, "key": key},
                "annotations": {
                    "summary": summary,
                    "runbook_url": runbook_base + runbook_link(runbook),
                },
            }
        )
    rules.append(
        {
            "alert": "AayuDailySummary",
            "expr": "vector(1)",
            "labels": {"severity": Severity.LOW.value, "key": "daily_summary"},
            "annotations": {
                "summary": "Daily summary: sign-ups "
                '{{ with query "sum(increase(aayu_signups_total[1d]))" }}'
                "{{ . | first | value | humanize }}{{ end }}",
                "runbook_url": runbook_base + runbook_link(DAILY_SUMMARY_RUNBOOK),
            },
        }
    )
    return {"groups": [{"name": "aayu-accounts", "rules": rules}]}


def alertmanager_example() -> dict[str, Any]:
    routes = []
    receivers: list[dict[str, Any]] = [{"name": "default-log"}]
    for severity in Severity:
        wait, interval, repeat = _TIMING[severity]
        name = f"aayu-{severity.value}"
        routes.append(
            {
                "matchers": [f'severity="{severity.value}"'],
                "receiver": name,
                "group_by": ["alertname", "key"],
                "group_wait": wait,
                "group_interval": interval,
                "repeat_interval": repeat,
            }
        )
        receiver: dict[str, Any] = {"name": name}
        if severity is Severity.CRITICAL:
            receiver["pagerduty_configs"] = [
                {"routing_key": "<PAGERDUTY_ROUTING_KEY>", "send_resolved": True}
            ]
        elif severity is Severity.LOW:
            receiver["email_configs"] = [{"to": "<OPS_EMAIL>", "send_resolved": False}]
        else:
            receiver["slack_configs"] = [
                {
                    "api_url": "<SLACK_WEBHOOK_URL>",
                    "channel": "#aayu-ops",
                    "send_resolved": True,
                    "title": "{{ .CommonLabels.severity | toUpper }}: "
                    "{{ .CommonLabels.alertname }}",
                    "text": "{{ range .Alerts }}{{ .Annotations.summary }} "
                    "(runbook: {{ .Annotations.runbook_url }})\n{{ end }}",
                }
            ]
        receivers.append(receiver)
    return {
        "route": {
            "receiver": "default-log",
            "group_by": ["alertname"],
            "routes": routes,
        },
        # A critical alert silences the high/medium ones of the same key while it fires.
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity=~"high|medium"'],
                "equal": ["key"],
            }
        ],
        "receivers": receivers,
    }


def render(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)
