"""The setup script refuses what it cannot set up before it installs anything, with the fix."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_setup_refuses_a_python_older_than_the_pinned_toolchain(tmp_path: Path) -> None:
    # A stand-in `python` of 3.10 first on PATH: the check runs before anything is installed,
    # so nothing else of the script runs.
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\ncase "$1" in -V) echo "Python 3.10.13" ;; *) exit 1 ;; esac\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SIEVE_TEST_UNPINNED", None)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup-test-env")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "needs Python 3.11 or newer" in result.stderr
    assert "has Python 3.10.13" in result.stderr and "Fix:" in result.stderr
    assert result.stdout == ""  # (nothing was set up)
