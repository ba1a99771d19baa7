"""Helpers of the packaging tier (importable as `_dist`): git's file list, and the built and
installed distributions its fixtures hand to the tests (see conftest.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "requirements" / "test.txt"
#: where the JupyterLab extension build writes what the wheel ships
LABEXTENSION_BUILD = Path("labextension") / "dist"


def unavailable(reason: str) -> None:
    """Fail (in CI) or skip (elsewhere) when the packaging tier cannot run here."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"packaging tier cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def tracked_files(*paths: str) -> list[str]:
    """What git tracks (under `paths`), as repository-relative POSIX paths."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        unavailable("the packaging tier compares the distributions with git's file list")
    done = subprocess.run(
        ["git", "ls-files", "-z", "--", *paths], cwd=REPO, capture_output=True, check=True
    )
    return sorted(name for name in done.stdout.decode().split("\0") if name)


def run(
    command: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `command`; fail with its output if it fails. It runs in its own process group,
    killed whole if the test stops waiting (pip, for one, works in a child process that
    would otherwise go on writing into a folder the teardown has removed)."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert done.returncode == 0, (
        f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done


@dataclass(frozen=True)
class Built:
    """The distributions, and the copy of the tracked files they were built from."""

    source: Path
    sdist: Path
    wheel: Path

    def extension_files(self) -> set[str]:
        """The files of the labextension build the distributions were made from."""
        root = self.source / LABEXTENSION_BUILD
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@dataclass(frozen=True)
class Installed:
    """A fresh virtualenv holding the wheel; `run` starts its programs with nothing of this
    checkout on their path, in a scratch working folder."""

    venv: Path
    site_packages: Path
    work: Path
    env: dict[str, str]

    def run(
        self, program: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the environment's programs (``python``, ``jupyter``, ...)."""
        return run(
            [str(self.venv / "bin" / program), *args],
            cwd=self.work,
            env=self.env if env is None else env,
            timeout=timeout,
        )
