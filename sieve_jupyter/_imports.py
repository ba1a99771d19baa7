"""What a failed import means, said truthfully.

A missing third-party module is an optional dependency that an extra installs; a missing module
of sieve-jupyter itself is a broken installation, which no extra can repair. Every place that
turns an `ImportError` into advice asks `installation_error` first.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from sieve_jupyter._errors import DependencyError, InstallationError
from sieve_jupyter._version import __version__

__all__ = ["installation_error", "own_missing_module", "require_extra"]

_PACKAGE = "sieve_jupyter"


def own_missing_module(exc: ImportError) -> str | None:
    """The module of this package that `exc` failed to import, or None when what is missing
    lies outside it (a third-party dependency)."""
    name = exc.name or ""
    if name == _PACKAGE or name.startswith(_PACKAGE + "."):
        return name
    return None


def installation_error(exc: ImportError, needed_by: str) -> InstallationError | None:
    """The error to raise when `exc` says part of sieve-jupyter itself is missing; None when
    the missing module is a third-party one (the caller then advises its extra).

    Args:
        exc: the failed import.
        needed_by: what could not load, for the message (e.g. ``"the 'docker' backend"``).
    """
    module = own_missing_module(exc)
    if module is None:
        return None
    where = Path(__file__).resolve().parent  # (this module sits at the package's root)
    return InstallationError(
        f"{needed_by} cannot load: {module} is part of sieve-jupyter itself, and the "
        f"installation at {where} cannot import it ({exc}). No extra installs it: this "
        "installation of sieve-jupyter is incomplete. Fix: reinstall it "
        f"(pip install --force-reinstall --no-deps 'sieve-jupyter=={__version__}'; in a source "
        "checkout, restore the missing files first: git status lists them). If it is still "
        "missing after that, the wheel or sdist was built without it: report it to the "
        "sieve-jupyter project."
    )


def require_extra(extra: str, modules: Sequence[str], needed_by: str) -> None:
    """Check, before anything is done, that the optional `modules` which `needed_by` imports
    are installed; they come with the package's `extra`.

    Raises:
        DependencyError: one is missing (the message names it, and the extra that installs it).
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise DependencyError(
            f"{needed_by} needs {' and '.join(missing)}, which the {extra!r} extra of "
            f"sieve-jupyter installs. Fix: pip install 'sieve-jupyter[{extra}]'."
        )
