"""The maintainer's checks, run with the suite so CI runs them: layers (import-linter), lint and format (ruff),
types (mypy). Each is configured in pyproject.toml; a failure prints the tool's own report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

BIN = Path(sys.executable).parent


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_no_layer_imports_upward() -> None:
    result = run_tool(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_layer_check_catches_an_upward_import() -> None:
    """The contract is live: a storage module that imports the desk breaks it."""
    intruder = REPO / "contactcenter" / "storage" / "_layer_probe.py"
    intruder.write_text("from contactcenter.telephony import desk  # noqa: F401\n", encoding="utf-8")
    try:
        result = run_tool(str(BIN / "lint-imports"), "--no-cache")
    finally:
        intruder.unlink()
    assert result.returncode != 0 and "contactcenter.storage._layer_probe" in result.stdout


@pytest.mark.parametrize("command", [("check",), ("format", "--check")], ids=["lint", "format"])
def test_ruff(command: tuple[str, ...]) -> None:
    result = run_tool(str(BIN / "ruff"), *command, ".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy() -> None:
    result = run_tool(str(BIN / "mypy"), "--cache-dir", "/tmp/contactcenter-mypy-cache")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
