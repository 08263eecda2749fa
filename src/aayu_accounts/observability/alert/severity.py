"""Alert severities and the runbook sections alerts point at."""

from __future__ import annotations

from enum import StrEnum

from aayu_accounts.config import Settings


class Severity(StrEnum):
    """The strategy's four levels and how fast a human must act on them."""

    CRITICAL = "critical"  # page now
    HIGH = "high"  # within 5 minutes
    MEDIUM = "medium"  # within the hour
    LOW = "low"  # the daily summary


RUNBOOK_FILE = "docs/runbook.md"


def runbook_link(anchor: str) -> str:
    """``docs/runbook.md#<anchor>``. Idempotent: callers may store either the bare anchor or
    the link, and the notification still names the section once."""
    if "#" in anchor:
        return anchor
    return f"{RUNBOOK_FILE}#{anchor}"


def repeat_seconds(settings: Settings, severity: Severity | str) -> int:
    """How long a still-firing alert waits before it is notified again."""
    return {
        Severity.CRITICAL: settings.alert_repeat_critical_seconds,
        Severity.HIGH: settings.alert_repeat_high_seconds,
        Severity.MEDIUM: settings.alert_repeat_medium_seconds,
        Severity.LOW: settings.alert_repeat_low_seconds,
    }[Severity(severity)]
