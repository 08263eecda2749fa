"""The NIST 800-63B / ASVS L2 password policy: length, common and breached lists, personal
information, strength, and every reason reported at once with a stable code."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from aayu_accounts.config import Settings
from aayu_accounts.identity.password import PasswordPolicy, ViolationCode
from aayu_accounts.identity.password.breached import BreachedPasswords
from aayu_accounts.identity.password.policy import MAX_LENGTH, common_passwords

STRONG = "marble orchid tractor sunlight"  # four unrelated words: zxcvbn scores it 4


def codes(policy: PasswordPolicy, password: str, **context: str) -> set[ViolationCode]:
    return {violation.code for violation in policy.check(password, **context)}


def test_a_long_passphrase_with_no_composition_rules_is_accepted() -> None:
    policy = PasswordPolicy()
    assert policy.check(STRONG) == []
    assert policy.check("nothing but lowercase letters here") == []


def test_minimum_length_defaults_to_12_and_is_configurable() -> None:
    assert Settings().password_min_length == 12
    policy = PasswordPolicy.from_settings(Settings())
    assert ViolationCode.TOO_SHORT in codes(policy, "kx9!vLq2#mZ")  # 11 characters
    assert ViolationCode.TOO_SHORT not in codes(policy, "kx9!vLq2#mZp")  # 12
    longer = PasswordPolicy.from_settings(Settings(password_min_length=16))
    assert ViolationCode.TOO_SHORT in codes(longer, "kx9!vLq2#mZp8wR")  # 15
    assert codes(longer, "kx9!vLq2#mZp8wRt") == set()


def test_minimum_length_can_never_go_below_8() -> None:
    with pytest.raises(ValidationError):
        Settings(password_min_length=7)
    with pytest.raises(ValueError, match="8"):
        PasswordPolicy(min_length=7)
    assert PasswordPolicy(min_length=8).min_length == 8


def test_maximum_is_128_characters_refused_never_truncated() -> None:
    policy = PasswordPolicy()
    words = (
        "marble orchid tractor sunlight violet canyon hammock pretzel glacier trumpet "
        "lantern pepper walrus saddle meadow cobalt quartz ember falcon ripple"
    )
    at_limit = words[:MAX_LENGTH]
    assert len(at_limit) == 128
    assert ViolationCode.TOO_LONG not in codes(policy, at_limit)
    assert codes(policy, at_limit + "x") == {ViolationCode.TOO_LONG}


def test_length_counts_unicode_characters_after_nfkc() -> None:
    policy = PasswordPolicy()
    # Twelve characters of Devanagari and Cyrillic: any Unicode is welcome.
    assert ViolationCode.TOO_SHORT not in codes(policy, "नमस्ते दुनिया")
    assert policy.check("надёжный пароль для врача") == []
    # U+FB03 "ffi" ligature becomes three letters under NFKC: 10 ligatures = 30 characters.
    assert ViolationCode.TOO_SHORT not in codes(policy, "\ufb03" * 10)


def test_the_30000_most_common_passwords_are_refused_after_nfkc_and_casefold() -> None:
    ranked = FREQUENCY_LISTS["passwords"]
    assert len(ranked) == 30000
    assert common_passwords() == frozenset(ranked)
    policy = PasswordPolicy(min_length=8)
    for password in ("password1234", "QWERTY123456", "1qaz2wsx3edc", ranked[-1] * 2):
        expected = ViolationCode.COMMON_PASSWORD in codes(policy, password)
        assert expected == (password.casefold() in common_passwords()), password
    assert ViolationCode.COMMON_PASSWORD in codes(policy, "PassWord1234")
    # Full-width letters and digits fold to the same common password.
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "password1234")
    assert ViolationCode.COMMON_PASSWORD in codes(policy, fullwidth)
    # The lowest-ranked entries are on the list too, not only the famous ones.
    assert ViolationCode.COMMON_PASSWORD in codes(PasswordPolicy(min_length=8), ranked[29999])


@pytest.mark.parametrize(
    ("password", "context", "expected"),
    [
        ("priya.sharma-rocks-1987", {"email": "priya.sharma@example.com"}, "contains_email"),
        ("my PRIYASHARMA passphrase", {"email": "PriyaSharma@example.com"}, "contains_email"),
        ("sharma was here at night", {"full_name": "Priya Sharma"}, "contains_name"),
        ("priyasharma and the moon", {"full_name": "Priya Sharma"}, "contains_name"),
        (
            "sunrise family clinic rocks",
            {"org_name": "Sunrise Family Clinic"},
            "contains_organization_name",
        ),
        (
            "I love working at Lakeview",
            {"org_name": "Lakeview Medical"},
            "contains_organization_name",
        ),
        ("my-aayu-password-is-long", {}, "contains_product_name"),
        ("AAYU WELL forever and ever", {}, "contains_product_name"),
    ],
)
def test_personal_and_product_names_are_refused(
    password: str, context: dict[str, str], expected: str
) -> None:
    assert ViolationCode(expected) in codes(PasswordPolicy(), password, **context)


def test_generic_words_of_a_clinic_name_are_not_refused_alone() -> None:
    policy = PasswordPolicy()
    context = {"org_name": "Sunrise Family Clinic"}
    assert ViolationCode.CONTAINS_ORGANIZATION_NAME not in codes(
        policy, "the clinic of marble orchids", **context
    )
    assert ViolationCode.CONTAINS_ORGANIZATION_NAME in codes(
        policy, "sunrise over marble orchids", **context
    )


def test_weak_passwords_score_below_3_and_are_refused() -> None:
    policy = PasswordPolicy()
    assert ViolationCode.TOO_WEAK in codes(policy, "aaaaaaaaaaaaaaaa")
    assert ViolationCode.TOO_WEAK in codes(policy, "abcdefghijklmnop")
    assert ViolationCode.TOO_WEAK not in codes(policy, STRONG)
    relaxed = PasswordPolicy(min_strength=0)
    assert ViolationCode.TOO_WEAK not in codes(relaxed, "abcdefghijklmnop")


def test_every_reason_is_reported_at_once_with_code_and_message() -> None:
    violations = PasswordPolicy().check(
        "aayu", email="aayu@example.com", full_name="Aayu Tester", org_name="Aayu Clinic"
    )
    found = {v.code for v in violations}
    assert found >= {
        ViolationCode.TOO_SHORT,
        ViolationCode.CONTAINS_EMAIL,
        ViolationCode.CONTAINS_NAME,
        ViolationCode.CONTAINS_ORGANIZATION_NAME,
        ViolationCode.CONTAINS_PRODUCT_NAME,
        ViolationCode.TOO_WEAK,
    }
    for violation in violations:
        body = violation.as_dict()
        assert body["code"] == violation.code.value
        assert body["message"]
        assert "aayu" not in body["message"].casefold()  # messages never echo the password


async def test_acheck_runs_the_same_checks_off_the_loop() -> None:
    policy = PasswordPolicy()
    assert await policy.acheck(STRONG) == []
    found = await policy.acheck("password", email="x@example.com")
    assert {v.code for v in found} >= {ViolationCode.TOO_SHORT, ViolationCode.COMMON_PASSWORD}


def write_breach_list(path: Path, passwords: list[str]) -> Path:
    digests = sorted(
        hashlib.sha1(p.encode(), usedforsecurity=False).hexdigest().upper() for p in passwords
    )
    path.write_text("".join(f"{d}:{i + 1}\r\n" for i, d in enumerate(digests)))
    return path


def test_breached_passwords_come_from_an_offline_list(tmp_path: Path) -> None:
    breached = ["a very leaked passphrase", "another leaked passphrase", *map(str, range(500))]
    path = write_breach_list(tmp_path / "pwned.txt", breached)
    policy = PasswordPolicy.from_settings(Settings(breached_passwords_file=path))
    assert codes(policy, "a very leaked passphrase") == {ViolationCode.BREACHED_PASSWORD}
    assert codes(policy, "another leaked passphrase") == {ViolationCode.BREACHED_PASSWORD}
    assert codes(policy, STRONG) == set()


def test_an_empty_breach_list_refuses_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert not BreachedPasswords(empty).contains("anything")


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    listed=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=60, unique=True),
    others=st.lists(st.text(min_size=1, max_size=20), max_size=20),
)
def test_breach_list_binary_search_finds_exactly_the_listed(
    tmp_path_factory: pytest.TempPathFactory, listed: list[str], others: list[str]
) -> None:
    path = write_breach_list(tmp_path_factory.mktemp("breach") / "list.txt", listed)
    breach = BreachedPasswords(path)
    try:
        for password in listed:
            assert breach.contains(password)
        for password in others:
            assert breach.contains(password) == (password in listed)
    finally:
        breach.close()
