"""Runs last (tests/security/log_sweep.py orders it): no log line written during the whole run
contains any secret the suite sent or received."""

from __future__ import annotations

import secrets

import structlog

from tests.audit.sweep import SWEEP
from tests.security.log_sweep import LOG_LINES, find_leaks


def test_the_sweep_sees_rendered_lines_and_finds_a_planted_secret() -> None:
    # Through the service's own logging set-up, as a line a deployment would write.
    from aayu_accounts.log_config import configure_logging

    configure_logging("INFO", json=True)
    planted = f"Pl{secrets.token_urlsafe(18)}!"
    before = len(LOG_LINES)
    structlog.get_logger("aayu_accounts.test").info("log_sweep.self_test", note=planted)
    new = LOG_LINES[before:]
    assert any("log_sweep.self_test" in line for line in new)
    assert find_leaks(new, {planted})
    assert not find_leaks(new, {f"Xx{secrets.token_urlsafe(18)}"})
    # A secret inside a longer token (a hash, an id) is not a leak of that secret.
    assert not find_leaks(["ab123456cd"], {"123456"})
    assert find_leaks(["code=123456 ok"], {"123456"})
    LOG_LINES[before:] = []  # the planted value is this test's, not the service's


def test_no_log_line_of_the_run_contains_a_secret() -> None:
    if SWEEP.full_run:
        assert LOG_LINES, "no log line was captured: is tests.security.log_sweep registered?"
        assert len(SWEEP.secrets) > 100, "the audit sweep collected (almost) no secrets"
    leaks = find_leaks(LOG_LINES, SWEEP.secrets)
    assert leaks == [], leaks[:5]
