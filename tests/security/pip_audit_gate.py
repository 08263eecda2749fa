"""`make security-lint`'s dependency audit: pip-audit on the installed environment.

Run as ``python -m tests.security.pip_audit_gate``. It fails on any known vulnerability that is
not in ``IGNORED`` (each ignore needs a justification next to it), and says how many installed
distributions were really audited.

pip-audit's PyPI service asks ``/pypi/<name>/<version>/json``. Where only the project endpoint
``/pypi/<name>/json`` answers (a registry proxy that serves the newest release only, as in this
project's workplace), every dependency comes back "not found" and pip-audit alone would report a
clean run having audited nothing. For those, this gate reads the project endpoint: its
``vulnerabilities`` list is the newest release's, so it counts as an audit of the installed
version only when the installed version is that newest release; anything else stays listed as
unaudited. With ``AAYU_PIP_AUDIT_STRICT=1`` an unaudited distribution fails the gate too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# Vulnerability id -> why it is accepted. Empty: nothing is ignored.
IGNORED: dict[str, str] = {}

PYPI = "https://pypi.org/pypi"


def _run_pip_audit() -> dict[str, Any]:
    command = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off"]
    command += ["--skip-editable"]  # the project itself is not on PyPI
    for vuln_id in IGNORED:
        command += ["--ignore-vuln", vuln_id]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if not result.stdout.strip():
        sys.stderr.write(result.stderr)
        raise SystemExit(f"pip-audit produced no report (exit {result.returncode})")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _newest_release_vulns(name: str, version: str) -> list[dict[str, Any]] | None:
    """The project's newest-release vulnerabilities, or None when that is not ``version``."""
    url = f"{PYPI}/{name}/json"
    try:
        with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 - fixed https URL
            data = json.load(response)
    except OSError:
        return None
    if data.get("info", {}).get("version") != version:
        return None
    vulns: list[dict[str, Any]] = data.get("vulnerabilities") or []
    return vulns


def main() -> int:
    report = _run_pip_audit()
    found: list[str] = []
    audited = 0
    unreachable: list[tuple[str, str]] = []
    for dependency in report["dependencies"]:
        if "skip_reason" not in dependency:
            audited += 1
            found += [
                f"{dependency['name']} {dependency['version']}: {v['id']}"
                for v in dependency["vulns"]
            ]
        elif "not found on PyPI" in dependency["skip_reason"]:
            version = dependency["skip_reason"].rsplit("(", 1)[-1].rstrip(")")
            unreachable.append((dependency["name"], version))
    with ThreadPoolExecutor(max_workers=8) as pool:
        fallback = list(pool.map(lambda nv: _newest_release_vulns(*nv), unreachable))
    unaudited: list[str] = []
    for (name, version), vulns in zip(unreachable, fallback, strict=True):
        if vulns is None:
            unaudited.append(f"{name} {version}")
            continue
        audited += 1
        for vuln in vulns:
            ids = {vuln.get("id"), *(vuln.get("aliases") or [])}
            if not ids & IGNORED.keys():
                found.append(f"{name} {version}: {vuln.get('id')}")
    print(f"pip-audit gate: {audited} distributions audited, {len(unaudited)} could not be")  # noqa: T201
    if unaudited:
        print("  not audited (not the newest release, or no answer):", ", ".join(unaudited))  # noqa: T201
    if found:
        print("known vulnerabilities:\n  " + "\n  ".join(found))  # noqa: T201
        return 1
    if unaudited and os.environ.get("AAYU_PIP_AUDIT_STRICT") == "1":
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
