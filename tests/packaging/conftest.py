"""The packaging tier: the sdist and wheel built from the tracked files, and that wheel
installed (not editable) into a fresh virtualenv.

- `built` (session): copies the files git tracks (plus the prebuilt labextension, when the
  checkout has one) to a scratch folder, so nothing untracked or ignored can slip into the
  distributions, and runs ``python -m build`` there: the sdist first, then the wheel *from the
  sdist*, as a user's ``pip install`` of the sdist would. Build isolation is off: the build
  backend comes pinned with the test extras, so building reaches no network. Without a prebuilt
  labextension, the build runs the JupyterLab extension build itself (Node, npm registry).
- `installed` (session): a fresh virtualenv (without a pip of its own) holding the wheel and
  its user extras (``jupyter``, ``docker``, ``ray``, ``serve``, ``export``), installed by this
  environment's pip, with its cache and with requirements/test.txt as constraints, so only what
  the cache lacks is downloaded. `installed_bare`: the same with the wheel alone (no extra),
  as ``pip install sieve-jupyter`` leaves a user.

Everything is made under one temporary folder, removed at the end of the session. Every test
here is marked ``packaging``. Without git, or without Node when the labextension must be built,
the tier skips with the reason outside CI and fails in CI.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _dist import (
    CONSTRAINTS,
    LABEXTENSION_BUILD,
    REPO,
    Built,
    Installed,
    run,
    tracked_files,
    unavailable,
)

#: the extras a user installs to use everything the package has (notebook side, Docker, Ray,
#: the HTTP server, exporting bundles): every module must import with them
USER_EXTRAS = "jupyter,docker,ray,serve,export"


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="sieve-packaging-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def built(scratch: Path) -> Built:
    source = scratch / "source"
    for name in tracked_files():
        if not (REPO / name).exists():
            continue  # deleted in the checkout: the comparison with git's list says so
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    prebuilt = REPO / LABEXTENSION_BUILD
    if (prebuilt / "package.json").is_file():
        # as `pip install` (scripts/setup-test-env) built it in this checkout
        shutil.copytree(prebuilt, source / LABEXTENSION_BUILD)
    elif shutil.which("node") is None:
        unavailable("the labextension is not built in this checkout, and Node is missing")
    out = scratch / "dist"
    run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        cwd=scratch,
        timeout=900,
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Built(source, sdist, wheel)


@pytest.fixture(scope="session")
def installed(built: Built, scratch: Path) -> Installed:
    return _install(built, scratch / "full", USER_EXTRAS)


@pytest.fixture(scope="session")
def installed_bare(built: Built, scratch: Path) -> Installed:
    """The wheel alone, as ``pip install sieve-jupyter`` gives it: no extra."""
    return _install(built, scratch / "bare", "")


def _install(built: Built, folder: Path, extras: str) -> Installed:
    venv = folder / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
        and not key.startswith("JUPYTER")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            f"{built.wheel}[{extras}]" if extras else str(built.wheel),
            "--constraint",
            str(CONSTRAINTS),
        ],
        env=env,
        timeout=900,
    )
    site_packages = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            env=env,
        ).stdout.strip()
    )
    work = folder / "work"
    work.mkdir()
    jupyter = folder / "jupyter"  # nothing of this machine's Jupyter set-up counts
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PYTHONNOUSERSITE="1",
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_DATA_DIR=str(jupyter / "data"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
    )
    return Installed(venv, site_packages, work, env)
