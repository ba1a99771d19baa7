"""Serve bundles (and a kernel's functions) over HTTP, with Cog's prediction API.

    serve_bundle("bundles/quickstart", ServeSettings(port=8000))   # `sieve-jupyter serve`
    serve_modelyaml("model.yaml", ServeSettings(port=8000))         # `... serve model.yaml`
    serve_functions(["adder"], port=0)                             # `%sieve serve adder`

The server is one more client of the manager: the same warm workers, setup once per worker,
the same restart and crash semantics. It imports FastAPI only here, never in workers: the
worker-side half (`_adapter`) needs nothing but the package's lower layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sieve_jupyter._imports import require_extra
from sieve_jupyter.serve._settings import TOKEN_VARIABLE, ServeSettings

if TYPE_CHECKING:
    from sieve_jupyter.serve._server import BackgroundServer

__all__ = [
    "SERVER_MODULES",
    "TOKEN_VARIABLE",
    "ServeSettings",
    "require_server",
    "serve_bundle",
    "serve_functions",
    "serve_modelyaml",
]

#: what the server imports that only the ``serve`` extra installs
SERVER_MODULES = ("fastapi", "uvicorn")


def require_server(needed_by: str = "serving over HTTP") -> None:
    """Raise `DependencyError` (naming the ``serve`` extra) before anything starts, when the
    server's packages are not installed."""
    require_extra("serve", SERVER_MODULES, needed_by)


def serve_bundle(path: Any, settings: ServeSettings | None = None, prepare: Any = None) -> int:
    """Serve a bundle in the foreground until SIGTERM; see `_server.serve_bundle`."""
    require_server("serving a bundle")
    from sieve_jupyter.serve._server import serve_bundle as run

    return run(path, settings or ServeSettings(), prepare)


def serve_modelyaml(
    path: Any, settings: ServeSettings | None = None, *, name: str | None = None
) -> int:
    """Serve the models of a model.yaml in the foreground until SIGTERM; see `_server`."""
    require_server("serving a model.yaml")
    from sieve_jupyter.serve._server import serve_modelyaml as run

    return run(path, settings or ServeSettings(), name=name)


def serve_functions(names: Any, **settings: Any) -> BackgroundServer:
    """Serve this process's functions from a background thread; see `_server`."""
    require_server("%sieve serve")
    from sieve_jupyter.serve._server import serve_functions as run

    return run(names, **settings)
