"""Where deployments keep their state on this machine: a folder under the Jupyter data
directory (``jupyter --data-dir``), or ``SIEVE_DEPLOYMENTS_DIR``.

A Docker deployment sees the host's folder mounted read-only (so a function in it can reach
the local deployments by name) and is told so by ``SIEVE_DEPLOYMENTS_READONLY``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

__all__ = [
    "DIR_VARIABLE",
    "LOG_BYTES",
    "LOG_FILES",
    "READONLY_VARIABLE",
    "SERVER_LOG",
    "deployments_dir",
    "log_lines",
    "read_only",
    "slug",
]

#: overrides where the registry lives (tests, and Docker deployments, which mount it)
DIR_VARIABLE = "SIEVE_DEPLOYMENTS_DIR"
#: set in a Docker deployment: the registry is the host's, mounted read-only; its processes
#: are not visible from here, so entries are trusted rather than checked
READONLY_VARIABLE = "SIEVE_DEPLOYMENTS_READONLY"
#: a local deployment's log, in its version's folder: rotated at `LOG_BYTES`, `LOG_FILES`
#: files in all (``server.log``, ``server.log.1``, ...), as a Docker deployment's is capped
SERVER_LOG = "server.log"
LOG_BYTES = 10 * 1024 * 1024
LOG_FILES = 3


def log_lines(folder: Path, lines: int) -> list[str]:
    """The last `lines` lines of the log in a local deployment's `folder`, with their line
    ends, from its rotated files too when the current one holds fewer."""
    found: list[str] = []
    for n in range(LOG_FILES):
        path = folder / (SERVER_LOG if n == 0 else f"{SERVER_LOG}.{n}")
        try:
            text = path.read_text(errors="replace")
        except OSError:
            break
        found[:0] = text.splitlines(keepends=True)
        if len(found) >= lines:
            break
    return found[-lines:] if lines > 0 else []


def deployments_dir() -> Path:
    """The folder of the local registry, its lock and the local deployments' files."""
    value = os.environ.get(DIR_VARIABLE)
    if value:
        return Path(value)
    return _jupyter_data_dir() / "sieve-jupyter" / "deployments"


def _jupyter_data_dir() -> Path:
    """``jupyter --data-dir``; without Jupyter installed (a plain script, a server), the same
    folder by Jupyter's rules, so every process of the user finds the same registry."""
    try:
        from jupyter_core.paths import jupyter_data_dir
    except ImportError:
        pass
    else:
        return Path(jupyter_data_dir())
    if os.environ.get("JUPYTER_DATA_DIR"):
        return Path(os.environ["JUPYTER_DATA_DIR"])
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Jupyter"
    if os.name == "nt":
        return Path(os.environ.get("APPDATA") or home) / "jupyter"
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "jupyter"


def read_only() -> bool:
    """Whether this process sees the registry of another machine namespace (a container)."""
    return os.environ.get(READONLY_VARIABLE, "") not in ("", "0")


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def slug(text: str) -> str:
    """`text` as one safe path component (and Docker name part): readable where it can be,
    with a short hash where characters had to be replaced, so two names never meet."""
    safe = _UNSAFE.sub("_", text).strip(".") or "_"
    if safe != text:
        safe = f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return safe
