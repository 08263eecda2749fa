"""Packaging: PEP 621 metadata with a standard backend, lower bounds, a dev extra, the console
script; the built wheel carries the migrations, so an installed copy migrates without a checkout.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pep_621_metadata_with_a_standard_build_backend() -> None:
    assert PYPROJECT["build-system"]["build-backend"] == "hatchling.build"
    project = PYPROJECT["project"]
    assert project["name"] == "aayu-accounts"
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"] == {"aayu-accounts": "aayu_accounts.cli:main"}


def test_every_dependency_has_a_lower_bound_and_dev_tools_are_an_extra() -> None:
    project = PYPROJECT["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        requirement = Requirement(spec)
        operators = {clause.operator for clause in requirement.specifier}
        # ">=" everywhere; "==" only where a test stand-in needs that exact release (NOTES.md).
        assert operators & {">=", "=="}, f"{spec} has no lower bound"
    dev = {Requirement(spec).name for spec in project["optional-dependencies"]["dev"]}
    assert {"pytest", "mypy", "ruff"} <= dev


def test_the_wheel_ships_the_migrations_and_an_installed_copy_finds_them(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("aayu_accounts-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "aayu-accounts = aayu_accounts.cli:main" in archive.read(entry_points).decode()
        archive.extractall(tmp_path / "site")
    shipped = {Path(n).name for n in names if n.startswith("aayu_accounts/_migrations/versions/")}
    in_checkout = {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert in_checkout <= shipped
    assert "aayu_accounts/_migrations/env.py" in names
    # Imported from the unpacked wheel, not the checkout: the migrations it finds are its own.
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from aayu_accounts import migrate; print(migrate.migrations_dir());"
            " print(migrate.head_revision())",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    directory, head = found.stdout.split()
    assert directory == str(tmp_path / "site" / "aayu_accounts" / "_migrations")
    from aayu_accounts import migrate

    assert head == migrate.head_revision()
