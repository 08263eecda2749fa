"""Every error code identity (and the app's generic errors) can answer has a sentence in the
console, so a clinic's staff never reads a raw code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import aayu_accounts.identity
from aayu_accounts import errors
from aayu_accounts.console.messages import ERRORS, FLASHES, flash_text
from aayu_accounts.errors import AppError

# Reached by API clients only (JSON bodies, CORS, signed service requests): a console page
# never shows them.
API_ONLY = {"malformed_json", "method_not_allowed", "payload_too_large", "bad_request"}


def _codes() -> set[str]:
    prefix = aayu_accounts.identity.__name__ + "."
    modules = [errors] + [
        importlib.import_module(found.name)
        for found in pkgutil.walk_packages(aayu_accounts.identity.__path__, prefix)
    ]
    return {
        member.code
        for module in modules
        for _, member in inspect.getmembers(module, inspect.isclass)
        if issubclass(member, AppError)
    }


def test_every_identity_error_code_has_a_sentence() -> None:
    codes = _codes()
    assert "invalid_credentials" in codes  # the walk sees identity's errors
    missing = sorted(codes - set(ERRORS) - API_ONLY)
    assert not missing, f"error codes without a console message: {missing}"


def test_only_known_flash_keys_show_text() -> None:
    assert flash_text("signed_out") == FLASHES["signed_out"]
    assert flash_text("<script>alert(1)</script>") is None
