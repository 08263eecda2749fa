"""The audit pages through the console (no browser): filters, cursor pages, export, roles."""

from __future__ import annotations

import re

import httpx

from aayu_accounts.audit import Actor, AuditAction, record
from aayu_accounts.db import Database
from tests.console.helpers import csrf_of
from tests.console.test_billing_pages import as_browser
from tests.identity.accounts.helpers import invite_and_join, signed_up

_ROW = re.compile(r'<tr data-sequence="(\d+)">')


def rows(html: str) -> list[str]:
    """The actions of the listed events (not of the filter's options)."""
    return re.findall(r"<td><code>([a-z_:]+)</code></td>", html)


def sequences(html: str) -> list[int]:
    return [int(s) for s in _ROW.findall(html)]


async def test_auditor_filters_by_action_and_outcome(
    console: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(console, db)
    auditor = await invite_and_join(console, db, owner, "auditor")
    other = await signed_up(console, db, org_name="Another Clinic")
    async with db.session_scope() as session:
        await record(
            session,
            AuditAction.BAA_RECORDED,
            actor=Actor.user(owner.user_id),
            org_id=owner.org_id,
            outcome="failure",
        )
        await record(
            session, AuditAction.BAA_RECORDED, actor=Actor.user(other.user_id), org_id=other.org_id
        )
    as_browser(console, auditor)
    page = await console.get("/audit")
    assert page.status_code == 200, page.text
    assert "identity:invitation:created" in rows(page.text)
    assert other.user_id not in page.text  # another clinic's events never show
    assert 'id="audit-export"' in page.text  # auditors may export

    filtered = await console.get(
        "/audit", params={"action": "identity:invitation:created", "outcome": "success"}
    )
    assert filtered.status_code == 200
    assert set(rows(filtered.text)) == {"identity:invitation:created"}
    failures = await console.get("/audit", params={"outcome": "failure"})
    assert rows(failures.text) == ["identity:baa:recorded"]
    by_actor = await console.get("/audit", params={"actor_id": auditor.user_id})
    assert "identity:invitation:accepted" in rows(by_actor.text)
    assert "identity:invitation:created" not in rows(by_actor.text)
    bad = await console.get("/audit", params={"since": "2026-02-30"})
    assert bad.status_code == 422
    assert 'data-code="validation_error"' in bad.text


async def test_older_pages_follow_the_cursor_and_htmx_gets_rows_only(
    console: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(console, db)
    async with db.session_scope() as session:
        for _ in range(55):
            await record(
                session,
                AuditAction.ORG_UPDATED,
                actor=Actor.user(owner.user_id),
                org_id=owner.org_id,
            )
    as_browser(console, owner)
    first = await console.get("/audit", params={"action": "identity:org:updated"})
    assert len(sequences(first.text)) == 50
    link = re.search(r'hx-get="(/audit\?[^"]+)"', first.text)
    assert link is not None
    more = await console.get(link.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert more.status_code == 200
    assert "<html" not in more.text  # a fragment for htmx to append
    assert len(sequences(more.text)) == 5
    assert 'id="more-row"' not in more.text
    assert min(sequences(first.text)) > max(sequences(more.text))


async def test_export_goes_through_the_audited_export(
    console: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(console, db)
    as_browser(console, owner)
    page = await console.get("/audit")
    response = await console.post(
        "/audit/export",
        data={"csrf_token": csrf_of(page.text), "format": "csv", "action": ""},
        headers={"Origin": "https://testserver"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.startswith("sequence,id,occurred_at")
    assert "identity:org:created" in response.text
    after = await console.get("/audit", params={"action": "audit:events:exported"})
    assert len(sequences(after.text)) == 1  # the export recorded itself


async def test_admin_reads_but_cannot_export_and_clinicians_cannot_read(
    console: httpx.AsyncClient, db: Database
) -> None:
    owner = await signed_up(console, db)
    admin = await invite_and_join(console, db, owner, "admin")
    clinician = await invite_and_join(console, db, owner, "clinician")
    as_browser(console, admin)
    page = await console.get("/audit")
    assert page.status_code == 200
    assert 'id="audit-export"' not in page.text
    refused = await console.post(
        "/audit/export",
        data={"csrf_token": csrf_of(page.text), "format": "jsonl"},
        headers={"Origin": "https://testserver"},
    )
    assert refused.status_code == 403
    as_browser(console, clinician)
    assert (await console.get("/audit")).status_code == 403
