"""Email: queued in the transaction, delivered by a job through real SMTP or kept locally."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.email import sender
from aayu_accounts.email.rendering import render, template_names
from aayu_accounts.email.sender import SmtpConfig
from aayu_accounts.email.service import queue_email
from aayu_accounts.jobs import Worker
from aayu_accounts.models.job import Job
from aayu_accounts.models.outbox_email import OutboxEmail
from tests.email.smtp_server import smtp_server

CONTEXT = {
    "full_name": "Meera Iyer",
    "link": "http://127.0.0.1:8000/verify-email?token=abc_DEF-123",
    "hours": 24,
}


@pytest.fixture(autouse=True)
def fresh_transport() -> Iterator[None]:
    sender.reset()
    yield
    sender.reset()


async def _queue(db: Database, to: str = "meera@clinic-example.org") -> str:
    async with db.session_scope() as session:
        return await queue_email(session, to=to, template="verify_email", context=CONTEXT)


async def _status(db: Database, email_id: str) -> str:
    async with db.session_scope(write=False) as session:
        email = await session.get(OutboxEmail, email_id)
        assert email is not None
        return email.status


async def test_without_smtp_the_message_stays_in_the_local_outbox(
    db: Database, settings: Settings
) -> None:
    sender.configure(settings)  # no AAYU_SMTP_URL
    email_id = await _queue(db)
    assert await _status(db, email_id) == "pending"
    assert await Worker(db).run_once() >= 1
    assert await _status(db, email_id) == "local"
    async with db.session_scope(write=False) as session:
        email = await session.get(OutboxEmail, email_id)
        assert email is not None
        assert email.to_address == "meera@clinic-example.org"
        assert "verify-email?token=abc_DEF-123" in (email.body_text or "")


async def test_smtp_delivers_the_message_with_its_link(db: Database, settings: Settings) -> None:
    with smtp_server() as (handler, port):
        sender.configure(settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"}))
        email_id = await _queue(db)
        await Worker(db).run_once()
    assert await _status(db, email_id) == "sent"
    assert len(handler.messages) == 1
    message = handler.messages[0]
    assert message["To"] == "meera@clinic-example.org"
    assert message["Subject"] == "Confirm your email address for Aayu Well"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert b"/verify-email?token=abc_DEF-123" in payload


async def test_a_temporary_smtp_failure_is_retried(db: Database, settings: Settings) -> None:
    with smtp_server(fail_first=2) as (handler, port):
        sender.configure(
            settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"}),
        )
        email_id = await _queue(db)
        await Worker(db).run_once()
    assert await _status(db, email_id) == "sent"
    assert len(handler.messages) == 1


async def test_an_unreachable_server_leaves_the_job_to_be_retried(
    db: Database, settings: Settings
) -> None:
    with smtp_server() as (_handler, port):
        pass  # the server is gone: nothing listens on the port any more
    sender.configure(
        settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"}),
        transport=sender.SmtpSender(
            SmtpConfig.from_url(f"smtp://127.0.0.1:{port}", 2.0), attempts=2, max_wait=0.05
        ),
    )
    email_id = await _queue(db)
    await Worker(db).run_once()
    assert await _status(db, email_id) == "pending"
    async with db.session_scope(write=False) as session:
        job = await session.scalar(select(Job).where(Job.kind == "email.send"))
        assert job is not None
        assert job.status == "queued"
        assert job.attempts == 1
        assert job.last_error  # only the exception type is kept


async def test_rollback_drops_the_email_and_its_job(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.session_scope() as session:
            await queue_email(
                session, to="x@clinic-example.org", template="verify_email", context=CONTEXT
            )
            raise RuntimeError("the change failed")
    async with db.session_scope(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(OutboxEmail)) == 0
        assert await session.scalar(select(func.count()).select_from(Job)) == 0


def test_smtp_url_forms() -> None:
    plain = SmtpConfig.from_url("smtp://mail.example.org:2525", 5)
    assert (plain.hostname, plain.port, plain.use_tls, plain.start_tls) == (
        "mail.example.org",
        2525,
        False,
        None,
    )
    tls = SmtpConfig.from_url("smtps://user:p%40ss@mail.example.org", 5)
    assert (tls.port, tls.use_tls, tls.username, tls.password) == (465, True, "user", "p@ss")
    assert SmtpConfig.from_url("smtp+starttls://mail.example.org", 5).start_tls is True
    with pytest.raises(ValueError, match="AAYU_SMTP_URL"):
        SmtpConfig.from_url("http://mail.example.org", 5)


def test_every_template_renders_with_a_subject() -> None:
    contexts: dict[str, dict[str, Any]] = {
        "verify_email": CONTEXT,
        "account_exists": {"full_name": "A", "reset_link": "http://x/reset-password"},
        "password_reset": {
            "full_name": "A",
            "link": "http://x/reset-password?token=t",
            "minutes": 30,
        },
        "password_changed": {"full_name": "A", "how": "changed", "when": "now", "reset_url": "u"},
        "mfa_changed": {"full_name": "A", "change": "enabled", "when": "now", "reset_url": "u"},
        "invitation": {"org_name": "C", "role": "admin", "link": "http://x/a?token=t", "days": 7},
    }
    assert set(contexts) <= set(template_names())
    for name, context in contexts.items():
        rendered = render(name, context)
        assert rendered.subject
        assert "{{" not in rendered.body
    with pytest.raises(Exception, match="undefined"):
        render("verify_email", {"full_name": "A"})
