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

from sieve_jupyter.serve._settings import TOKEN_VARIABLE, ServeSettings

if TYPE_CHECKING:
    from sieve_jupyter.serve._server import BackgroundServer

__all__ = ["TOKEN_VARIABLE", "ServeSettings", "serve_bundle", "serve_functions", "serve_modelyaml"]


def serve_bundle(path: Any, settings: ServeSettings | None = None, prepare: Any = None) -> int:
    """Serve a bundle in the foreground until SIGTERM; see `_server.serve_bundle`."""
    from sieve_jupyter.serve._server import serve_bundle as run

    return run(path, settings or ServeSettings(), prepare)


def serve_modelyaml(
    path: Any, settings: ServeSettings | None = None, *, name: str | None = None
) -> int:
    """Serve the models of a model.yaml in the foreground until SIGTERM; see `_server`."""
    from sieve_jupyter.serve._server import serve_modelyaml as run

    return run(path, settings or ServeSettings(), name=name)


def serve_functions(names: Any, **settings: Any) -> BackgroundServer:
    """Serve this process's functions from a background thread; see `_server`."""
    from sieve_jupyter.serve._server import serve_functions as run

    return run(names, **settings)
