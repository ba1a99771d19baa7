"""The package type-checks strictly and lints clean (the settings live in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: the Python the project writes (the notebooks are prose with code: executed, not linted)
_PYTHON_TREES = ("sieve_jupyter", "tests", "benchmarks", "scripts")


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("mypy") is None, reason="mypy is in the dev extra")
def test_mypy_strict() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the dev extra")
def test_ruff() -> None:
    result = _run("ruff", "check", *_PYTHON_TREES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the dev extra")
def test_ruff_format() -> None:
    result = _run("ruff", "format", "--check", "--diff", *_PYTHON_TREES)
    assert result.returncode == 0, result.stdout + result.stderr
