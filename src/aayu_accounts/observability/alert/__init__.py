"""Alerts: rules evaluated by the leader, notifications through the durable job queue.

Other areas raise and resolve alerts with :func:`raise_alert` / :func:`resolve_alert`
(see ``/work/helper-notes/alerts-api.md`` and docs/observability.md).
"""

from aayu_accounts.observability.alert.service import raise_alert, resolve_alert
from aayu_accounts.observability.alert.severity import Severity

__all__ = ["Severity", "raise_alert", "resolve_alert"]
