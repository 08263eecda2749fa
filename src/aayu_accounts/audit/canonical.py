"""Canonical JSON for hashing audit events (RFC 8785 style).

Hashing ``json.dumps`` output is fragile: key order, float formatting and a database that
re-serializes JSON columns all change the bytes without changing the meaning. The canonical form
fixes each: keys sorted by UTF-16 code units, no insignificant whitespace, minimal string
escaping, and numbers written the way ECMAScript writes an IEEE double (RFC 8785 §3.2.2.3), so
``1.0`` and ``1`` are the same bytes and a float that survives a JSON round trip hashes the same.

:func:`normalize` is applied before an event is stored, so what is stored is exactly what is
hashed: tuples become lists, datetimes RFC 3339 strings, enums their values. Anything that has
no exact JSON meaning (NaN, integers beyond 2**53, bytes, arbitrary objects) is refused.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

encode_json_string = json.encoder.encode_basestring

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

# I-JSON (RFC 7493): integers beyond 2**53 do not survive a trip through an IEEE double.
MAX_SAFE_INTEGER = 2**53 - 1


def normalize(value: Any) -> JsonValue:
    """The JSON value that will be stored and hashed; raises ValueError/TypeError if none."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Enum):
        return normalize(value.value)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError("integer too large for canonical JSON; pass it as a string")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and infinity have no JSON form")
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in audit details")
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("audit detail keys must be strings")
            out[key] = normalize(item)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [normalize(item) for item in items]
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, the precision both databases keep."""
    if moment.tzinfo is UTC and moment.year >= 1000:
        # The same text as strftime below (isoformat pads the year to four digits, which
        # strftime's %Y does not below 1000), without the time zone conversion.
        return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(value: JsonValue) -> bytes:
    return _encode(value).encode("utf-8")


def canonical_text(value: JsonValue) -> str:
    """The canonical encoding as text (``canonical_bytes`` before UTF-8)."""
    return _encode(value)


def _encode(value: JsonValue) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError("integer too large for canonical JSON")
        return str(value)
    if isinstance(value, float):
        return number_to_string(value)
    if isinstance(value, list):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(_string(k) + ":" + _encode(value[k]) for k in keys) + "}"
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def _string(text: str) -> str:
    # json.dumps without ASCII escaping escapes exactly what RFC 8785 asks for: the quote, the
    # backslash and control characters (\b \f \n \r \t by name, others as lowercase \u00xx).
    # ``encode_basestring`` is what json.dumps(text, ensure_ascii=False) calls (the C
    # function), without its per-call encoder set-up.
    encoded = encode_json_string(text)
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("lone surrogate in a string") from exc
    return encoded


def number_to_string(number: float) -> str:
    """ECMAScript's Number.prototype.toString for a finite double (ECMA-262 §7.1.12.1)."""
    if not math.isfinite(number):
        raise ValueError("NaN and infinity have no JSON form")
    if number == 0:
        return "0"
    if number < 0:
        return "-" + number_to_string(-number)
    # repr() gives the shortest digits that round-trip, as ECMAScript requires; only the
    # placement of the decimal point and the exponent differ.
    mantissa, _, exponent_text = repr(number).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent_text) if exponent_text else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    exponent = n - 1
    sign = "+" if exponent >= 0 else "-"
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(exponent)}"
