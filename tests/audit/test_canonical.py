"""Canonical encoding (RFC 8785 style) and the chain's hashing, with property tests."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aayu_accounts.audit.canonical import (
    canonical_bytes,
    format_time,
    normalize,
    number_to_string,
)
from aayu_accounts.audit.chain import (
    GENESIS_HASH,
    LEAF_PREFIX,
    NODE_PREFIX,
    EventFields,
    document_v1,
    encode_v1,
    event_hash,
    leaf_hash,
    link,
)

# ECMAScript's own outputs (RFC 8785 Appendix B and ECMA-262 examples).
NUMBER_VECTORS = [
    (0.0, "0"),
    (-0.0, "0"),
    (1.0, "1"),
    (-1.5, "-1.5"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (9007199254740992.0, "9007199254740992"),
    (1e21, "1e+21"),
    (1e20, "100000000000000000000"),
    (333333333.3333333, "333333333.3333333"),
    (0.000001, "0.000001"),
    (1e-7, "1e-7"),
    (0.1, "0.1"),
    (123e-20, "1.23e-18"),
    (4.35, "4.35"),
    (295147905179352830000.0, "295147905179352830000"),
]


@pytest.mark.parametrize(("number", "expected"), NUMBER_VECTORS)
def test_numbers_are_written_as_ecmascript_writes_them(number: float, expected: str) -> None:
    assert number_to_string(number) == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_double_round_trips(number: float) -> None:
    text = number_to_string(number)
    assert float(text) == number or (number == 0 and float(text) == 0)
    # Read back as a double (as RFC 8785 numbers are), it is the same number.
    assert float(json.loads(canonical_bytes(number))) == number


def test_keys_sorted_by_utf16_and_no_whitespace() -> None:
    value = {"b": 1, "a": [True, None, "x"], "\u20ac": 2, "\U0001f600": 3, "\ufb01": 4}
    # UTF-16 order puts the surrogate pair of U+1F600 (0xD83D…) before U+FB01.
    assert canonical_bytes(normalize(value)).decode() == (
        '{"a":[true,null,"x"],"b":1,"\u20ac":2,"\U0001f600":3,"\ufb01":4}'
    )
    assert canonical_bytes('tab\there "q" \x01') == b'"tab\\there \\"q\\" \\u0001"'


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_a_json_round_trip_does_not_change_the_bytes(value: Any) -> None:
    """What a database's JSON column hands back hashes like what was written."""
    normalized = normalize(value)
    assert canonical_bytes(json.loads(json.dumps(normalized))) == canonical_bytes(normalized)


def test_normalize_refuses_what_has_no_exact_json_form() -> None:
    for bad in (math.nan, math.inf, 2**60, b"bytes", object()):
        with pytest.raises((ValueError, TypeError)):
            normalize({"x": bad})
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert normalize({"at": moment, "t": (1, 2)}) == {
        "at": "2026-01-02T03:04:05.000006Z",
        "t": [1, 2],
    }


def _fields(**changes: Any) -> EventFields:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "occurred_at": datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
        "actor_kind": "user",
        "actor_id": "u-1",
        "org_id": "o-1",
        "action": "identity:member:role_changed",
        "target_type": "membership",
        "target_id": "u-2",
        "outcome": "success",
        "ip": "203.0.113.9",
        "user_agent": "ua",
        "request_id": "req-1",
        "details": {"old": "clinician", "new": "admin"},
    }
    base.update(changes)
    return EventFields(**base)


def test_leaf_and_link_follow_rfc6962_domain_separation() -> None:
    fields = _fields()
    leaf = leaf_hash(fields)
    assert leaf == hashlib.sha256(LEAF_PREFIX + encode_v1(fields)).digest()
    assert link(GENESIS_HASH, leaf) == hashlib.sha256(NODE_PREFIX + bytes(32) + leaf).hexdigest()
    # A leaf's bytes presented as a link (or the reverse) hash differently.
    assert hashlib.sha256(NODE_PREFIX + encode_v1(fields)).digest() != leaf
    assert event_hash(GENESIS_HASH, fields) == link(GENESIS_HASH, leaf)


@given(
    st.sampled_from(
        [
            "event_id",
            "actor_kind",
            "actor_id",
            "org_id",
            "action",
            "target_type",
            "target_id",
            "outcome",
            "ip",
            "user_agent",
            "request_id",
        ]
    ),
    st.text(min_size=1, max_size=20),
)
def test_any_change_of_a_field_changes_the_hash(name: str, value: str) -> None:
    original = _fields()
    changed = _fields(**{name: value})
    if getattr(original, name) == value:
        return
    assert event_hash(GENESIS_HASH, original) != event_hash(GENESIS_HASH, changed)


@given(json_values)
def test_any_change_of_details_changes_the_hash(extra: Any) -> None:
    original = _fields()
    changed = _fields(details={**original.details, "extra": normalize(extra)})
    assert event_hash(GENESIS_HASH, original) != event_hash(GENESIS_HASH, changed)
    assert event_hash("11" * 32, original) != event_hash(GENESIS_HASH, original)


_AWKWARD = (
    "plain",
    'quote " backslash \\ newline \n tab \t nul \x00 \x1f del \x7f',
    "é ﬁ 😀 \u2028",
)


@pytest.mark.parametrize("text", _AWKWARD)
@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 29, 2, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 11, 29, 7, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),  # strftime does not pad such a year
    ],
)
def test_v1_encoding_is_the_generic_canonical_encoding_of_its_document(
    text: str, moment: datetime
) -> None:
    fields = EventFields(
        event_id=text,
        occurred_at=moment,
        actor_kind="user",
        actor_id=None,
        org_id=text,
        action="identity:login:succeeded",
        target_type=None,
        target_id=text,
        outcome="success",
        ip=None,
        user_agent=text,
        request_id="r",
        details={"b": [1, 0.5, None, text], "a": {text: True}, "é": 1e21},
    )
    assert encode_v1(fields) == canonical_bytes(document_v1(fields))
    assert format_time(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_v1_encoding_falls_back_for_odd_values_and_refuses_lone_surrogates() -> None:
    class Name(str):
        pass

    fields = EventFields(
        "id", datetime(2026, 1, 1, tzinfo=UTC), "user", Name("u"), None, "a", None, None,
        "success", None, None, None, {},
    )  # fmt: skip
    assert encode_v1(fields) == canonical_bytes(document_v1(fields))
    with pytest.raises(ValueError, match="surrogate"):
        encode_v1(replace(fields, actor_id="\ud800"))
