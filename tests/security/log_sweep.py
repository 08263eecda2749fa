"""A pytest plugin that keeps every log line the service writes during the run, for
``test_zz_log_sweep.py`` to search for the suite's secrets once everything else has run.

The service renders every log record, its own (structlog) and its libraries' (standard
logging), through one ``structlog.stdlib.ProcessorFormatter`` (``log_config.py``). The plugin
wraps that formatter's ``format``: each line is kept exactly as a deployment would write it,
after redaction. Observation only: the line is returned unchanged.

The secrets are the ones ``tests/audit/sweep.py`` collects on the wire (passwords, session and
CSRF tokens, TOTP and recovery codes, signatures, client secrets...). Lines are kept whole;
the search indexes their alphanumeric runs so a few thousand secrets against a few hundred
thousand lines stays a matter of seconds.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import pytest
import structlog

LOG_LINES: list[str] = []
LOG_SWEEP_TEST = "test_zz_log_sweep.py::"
_RUN = re.compile(r"[A-Za-z0-9]+")
MIN_RUN = 6

_original_format = structlog.stdlib.ProcessorFormatter.format


def _keeping_format(self: structlog.stdlib.ProcessorFormatter, record: logging.LogRecord) -> str:
    line = _original_format(self, record)
    LOG_LINES.append(line)
    return line


structlog.stdlib.ProcessorFormatter.format = _keeping_format  # type: ignore[method-assign]


def find_leaks(lines: Iterable[str], secrets: Iterable[str]) -> list[tuple[str, str]]:
    """(secret prefix, line excerpt) for each secret that appears in a line as a whole token
    (not inside a longer run of letters and digits, as SWEEP.leaks does for audit rows)."""
    kept = list(lines)
    runs: dict[str, list[int]] = {}
    for number, line in enumerate(kept):
        for run in _RUN.findall(line):
            if len(run) >= MIN_RUN:
                runs.setdefault(run, []).append(number)
    found: list[tuple[str, str]] = []
    for secret in secrets:
        pieces = sorted(_RUN.findall(secret), key=len, reverse=True)
        if pieces and len(pieces[0]) >= MIN_RUN:
            candidates: Iterable[int] = runs.get(pieces[0], [])
        else:  # nothing distinctive to index on: look everywhere
            candidates = range(len(kept))
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])")
        for number in candidates:
            match = pattern.search(kept[number])
            if match:
                start = max(0, match.start() - 60)
                found.append((secret[:2] + "…", kept[number][start : match.start()]))
                break
    return found


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # After tests/audit/sweep.py moved its sweep last: this one runs after that too.
    last = [item for item in items if LOG_SWEEP_TEST in item.nodeid]
    items[:] = [item for item in items if LOG_SWEEP_TEST not in item.nodeid] + last
