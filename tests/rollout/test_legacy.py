"""The v2.5 path: the credential list and the document store on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aayu_accounts.rollout.legacy.credentials import (
    LegacyCredentials,
    LegacyCredentialsInvalid,
    legacy_subject,
    parse,
)
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore

CREDENTIALS = {
    "users": [
        {"username": "drmehta", "password": "scribe-2024", "email": "Mehta@Clinic.example"},
        {"username": "nurse.ana", "password": "v2.5-rocks", "full_name": "Ana Lopez"},
    ]
}


def write(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content))
    return path


def test_verify_by_username_or_email_and_refuse_everything_else(tmp_path: Path) -> None:
    creds = LegacyCredentials(write(tmp_path / "auth.json", CREDENTIALS))
    by_name = creds.verify("DrMehta", "scribe-2024")
    by_email = creds.verify("mehta@clinic.example", "scribe-2024")
    assert by_name is not None
    assert by_email == by_name
    assert by_name.subject == legacy_subject("drmehta")
    assert creds.verify("drmehta", "wrong") is None
    assert creds.verify("nobody", "scribe-2024") is None
    assert creds.verify("nurse.ana", "") is None
    assert "scribe-2024" not in repr(by_name)
    assert "drmehta" not in by_name.subject


def test_file_is_reread_when_it_changes_and_missing_file_means_no_users(tmp_path: Path) -> None:
    path = write(tmp_path / "auth.json", CREDENTIALS)
    creds = LegacyCredentials(path)
    assert len(creds.users()) == 2
    write(path, {"users": [{"username": "solo", "password": "pw-solo-1"}]})
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    assert [u.username for u in creds.users()] == ["solo"]
    path.unlink()
    assert creds.users() == []
    assert LegacyCredentials(None).verify("solo", "pw-solo-1") is None


@pytest.mark.parametrize(
    "raw",
    [
        "not json SENTINEL",
        '["SENTINEL"]',
        '{"users": {"SENTINEL": 1}}',
        '{"users": [{"username": "SENTINEL"}]}',
        '{"users": [{"password": "SENTINEL"}]}',
    ],
)
def test_malformed_file_is_refused_without_echoing_it(raw: str) -> None:
    with pytest.raises(LegacyCredentialsInvalid) as caught:
        parse(raw)
    assert "SENTINEL" not in str(caught.value)


async def test_document_store_round_trip_and_atomic_files(tmp_path: Path) -> None:
    store = LegacyDocumentStore(tmp_path / "store")
    subject = legacy_subject("drmehta")
    assert await store.list_keys(subject) == []
    assert await store.get(subject, "prefs") is None
    await store.put(subject, "prefs", {"theme": "dark"})
    await store.put(subject, "templates.v1", {"soap": "S/O/A/P"})
    await store.put(subject, "prefs", {"theme": "light"})
    assert await store.get(subject, "prefs") == {"theme": "light"}
    assert await store.list_keys(subject) == ["prefs", "templates.v1"]
    assert await store.subjects() == [subject]
    files = sorted(p.name for p in (tmp_path / "store" / subject).iterdir())
    assert files == ["prefs.json", "templates.v1.json"]  # no temporary file left behind
    assert await store.delete(subject, "prefs") is True
    assert await store.delete(subject, "prefs") is False
    assert await store.list_keys(subject) == ["templates.v1"]


async def test_document_store_refuses_paths_outside_it(tmp_path: Path) -> None:
    store = LegacyDocumentStore(tmp_path / "store")
    for subject, key in (("../etc", "k"), ("ok", "../../x"), ("ok", "a/b"), ("", "k")):
        with pytest.raises(ValueError, match="invalid"):
            await store.put(subject, key, {})
    # "." and ".." are valid keys by the API's pattern and stay plain files.
    await store.put("ok", "..", {"a": 1})
    assert await store.get("ok", "..") == {"a": 1}
    assert (tmp_path / "store" / "ok" / "...json").is_file()
