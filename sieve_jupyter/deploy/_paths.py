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

__all__ = ["DIR_VARIABLE", "READONLY_VARIABLE", "deployments_dir", "read_only", "slug"]

#: overrides where the registry lives (tests, and Docker deployments, which mount it)
DIR_VARIABLE = "SIEVE_DEPLOYMENTS_DIR"
#: set in a Docker deployment: the registry is the host's, mounted read-only; its processes
#: are not visible from here, so entries are trusted rather than checked
READONLY_VARIABLE = "SIEVE_DEPLOYMENTS_READONLY"


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
