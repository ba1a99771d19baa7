"""``%sieve serve NAME... [--port N]``: serve a kernel's functions until the kernel stops."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from sieve_jupyter.bundle._readme import call_arguments, example_input
from sieve_jupyter.serve import require_server

if TYPE_CHECKING:
    from sieve_jupyter.serve._server import BackgroundServer

__all__ = ["serve_command"]


def serve_command(words: list[str]) -> BackgroundServer | None:
    """Start (or with ``--stop``, stop) a server for functions registered in this kernel."""
    from IPython.core.error import UsageError

    require_server("%sieve serve")  # (before the server's module imports its packages)
    from sieve_jupyter.serve._server import _servers, serve_functions

    parser = argparse.ArgumentParser(prog="%sieve serve", add_help=False, exit_on_error=False)
    parser.add_argument("names", nargs="+")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--stop", action="store_true")
    try:
        args = parser.parse_args(words)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise UsageError(f"%sieve serve NAME... [--port N]: {exc}") from None
    if args.stop:
        server = _servers.pop(tuple(args.names), None)
        if server is None:
            raise UsageError(f"%sieve serve --stop: no server for {', '.join(args.names)}.")
        server.stop()
        print(f"Stopped serving {', '.join(args.names)}.")
        return None
    settings: dict[str, Any] = {"port": args.port, "host": args.host, "insecure": args.insecure}
    server = serve_functions(args.names, **settings)
    example = example_input(server.service.functions[server.service.default].spec)
    print(
        f"Serving {', '.join(args.names)} at {server.url} until the kernel stops "
        f"(%sieve serve --stop {' '.join(args.names)}). Call it with\n"
        f"curl -s {server.url}/predictions -H 'content-type: application/json' "
        f"-d '{json.dumps({'input': example})}'\n"
        f"or from Python: sieve.function.get({server.url!r}).run({call_arguments(example)})"
    )
    return server
