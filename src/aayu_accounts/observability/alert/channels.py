"""Where notifications go: signed webhooks, email, the log.

One JSON body serves Slack and Teams incoming webhooks (``text``), PagerDuty-style receivers
(``event_action`` and ``dedup_key`` per alert) and our own tools (the structured ``alerts``).
It carries keys, summaries and runbook links only: never personal data or secrets.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from aayu_accounts.config import Settings
from aayu_accounts.kit import clock
from aayu_accounts.models.alert import Alert
from aayu_accounts.observability import metrics
from aayu_accounts.observability.alert.severity import runbook_link
from aayu_accounts.observability.alert.signing import SIGNATURE_HEADER, sign

log = structlog.get_logger("aayu_accounts.alerts")

WEBHOOK, EMAIL, LOG = "webhook", "email", "log"
SCHEMA = "aayu.alert.v1"
_MARKS = {"firing": "FIRING", "resolved": "RESOLVED", "notice": "NOTICE"}


class DeliveryFailed(Exception):
    """A receiver did not accept the notification; the job queue retries it."""


@dataclass(frozen=True)
class Channel:
    kind: str
    target: str  # a URL, comma-separated recipients, or "log"


def configured_channels(settings: Settings) -> list[Channel]:
    channels = [Channel(WEBHOOK, url) for url in settings.alert_webhook_urls]
    if settings.alert_email_recipients:
        channels.append(Channel(EMAIL, ",".join(settings.alert_email_recipients)))
    if settings.alert_log or not channels:
        # Never nowhere: with nothing configured the log still says it.
        channels.append(Channel(LOG, "log"))
    return channels


def alert_entry(alert: Alert) -> dict[str, Any]:
    return {
        "key": alert.key,
        "severity": alert.severity,
        "status": alert.status,
        "summary": alert.summary,
        "runbook": runbook_link(alert.runbook),
        "labels": dict(alert.labels or {}),
        "started_at": alert.fired_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "notification": alert.notifications + 1,
        # PagerDuty Events v2 vocabulary, so a thin relay can forward each entry as is.
        "event_action": "resolve" if alert.status == "resolved" else "trigger",
        "dedup_key": alert.key,
    }


def build_message(group: str, alerts: Iterable[Alert]) -> dict[str, Any]:
    entries = [alert_entry(a) for a in alerts]
    statuses = {e["status"] for e in entries}
    status = (
        "firing" if "firing" in statuses else ("resolved" if "resolved" in statuses else "notice")
    )
    title = f"[{group.upper()}] {len(entries)} alert(s) {status} - Aayu Accounts"
    lines = [
        f"{_MARKS.get(e['status'], e['status'])} {e['key']}: {e['summary']} "
        f"(runbook: {e['runbook']})"
        for e in entries
    ]
    return {
        "schema": SCHEMA,
        "id": uuid.uuid4().hex,
        "source": "aayu-accounts",
        "group": group,
        "severity": group,
        "status": status,
        "title": title,
        "summary": title,
        "text": "\n".join([title, *lines]),
        "alerts": entries,
        "sent_at": clock.now().isoformat(),
    }


async def deliver(channel: Channel, message: dict[str, Any], settings: Settings) -> None:
    """Deliver one message through one channel; raises :class:`DeliveryFailed` to be retried."""
    try:
        if channel.kind == WEBHOOK:
            await _webhook(channel.target, message, settings)
        elif channel.kind == EMAIL:
            await _email(channel.target, message, settings)
        else:
            log.warning(
                "alert.notification",
                group=message["group"],
                status=message["status"],
                alerts=[(a["key"], a["status"]) for a in message["alerts"]],
                text=message["text"],
            )
    except Exception:
        metrics.ALERT_NOTIFICATIONS.labels(channel.kind, "failed").inc()
        raise
    metrics.ALERT_NOTIFICATIONS.labels(channel.kind, "delivered").inc()


async def _webhook(url: str, message: dict[str, Any], settings: Settings) -> None:
    body = json.dumps(message, sort_keys=True, separators=(",", ":")).encode()
    headers = {"content-type": "application/json", "x-aayu-delivery": message["id"]}
    if settings.alert_webhook_secret:
        headers[SIGNATURE_HEADER] = sign(settings.alert_webhook_secret, body, clock.unix_now())
    async with httpx.AsyncClient(timeout=settings.alert_webhook_timeout_seconds) as client:
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"webhook unreachable: {type(exc).__name__}") from exc
    if response.status_code >= 300:
        raise DeliveryFailed(f"webhook answered {response.status_code}")


async def _email(recipients: str, message: dict[str, Any], settings: Settings) -> None:
    from aayu_accounts.email import sender  # noqa: PLC0415 - optional channel, loaded on use

    transport, from_address = sender.current()
    email = sender.build_message(
        sender=from_address, to=recipients, subject=message["title"], body=message["text"]
    )
    # The SMTP transport applies the SMTP dependency's policy itself (timeout per attempt,
    # retries, the shared breaker); wrapping it in the breaker again would cut its retries
    # short at one attempt's timeout and count each failure twice.
    if not await transport.deliver(email):
        # No SMTP configured (development): the log keeps what the email would have said.
        log.warning("alert.email_not_sent", reason="no SMTP configured", text=message["text"])
