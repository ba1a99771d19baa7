"""The ``sieve-jupyter`` command: export notebooks to bundles, serve and build bundles.

    sieve-jupyter export NOTEBOOK [-o DIR] [--name NAME ...] [--default NAME]
    sieve-jupyter serve BUNDLE [--host 127.0.0.1] [--port 8000] [--workers N]
    sieve-jupyter build BUNDLE [-t TAG] [--network host]
    sieve-jupyter schema            # the JSON Schema of sieve.yaml
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from sieve_jupyter._errors import SieveError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sieve-jupyter",
        description="Turn notebook functions and models into bundles, and serve them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser(
        "export", help="capture a notebook's sieve functions and models as a bundle")
    export.add_argument("notebook", help="the .ipynb file")
    export.add_argument("-o", "--output-dir", help="where the bundle goes "
                        "(default: bundles/<notebook name>)")
    export.add_argument("--name", action="append", dest="names", metavar="NAME",
                        help="a function or model to export (repeatable; default: all)")
    export.add_argument("--default", help="the function that also answers /predictions")
    export.add_argument("--base-image", help="the image the bundle's Dockerfile starts FROM")
    export.add_argument("--ca-bundle", help="a PEM bundle the image must trust (TLS proxies)")

    serve = commands.add_parser("serve", help="serve a bundle over HTTP (Cog's API)")
    serve.add_argument("bundle", help="the bundle's folder (it holds sieve.yaml)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; others need a token)")
    serve.add_argument("--port", type=int, default=8000, help="port (0: pick a free one)")
    serve.add_argument("--workers", type=int, default=1, help="warm workers per function")
    serve.add_argument("--default", help="the function that also answers /predictions")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback --host without SIEVE_SERVE_TOKEN")
    serve.add_argument("--queue-size", type=int, default=64,
                       help="predictions that may wait per function (more get 429)")
    serve.add_argument("--max-body-bytes", type=int, default=100 * 1024 * 1024,
                       help="larger request bodies get 413")
    serve.add_argument("--inline-file-bytes", type=int, default=5 * 1024 * 1024,
                       help="file outputs up to this size are data URLs, larger ones links")
    serve.add_argument("--keep-seconds", type=float, default=600.0,
                       help="how long finished predictions can be fetched")
    serve.add_argument("--port-file", help="write the port here once listening")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--busy-poll-us", type=int,
                       help="microseconds workers poll for their next call before sleeping")

    build = commands.add_parser("build", help="build a bundle's Docker image")
    build.add_argument("bundle")
    build.add_argument("-t", "--tag", help="image tag (default: the bundle's folder name)")
    build.add_argument("--network", help="network for RUN steps (e.g. host)")

    commands.add_parser("schema", help="print the JSON Schema of sieve.yaml")
    return parser


def _export(args: argparse.Namespace) -> int:
    from sieve_jupyter.bundle import export_notebook

    notebook = Path(args.notebook)
    output = args.output_dir or str(Path("bundles") / notebook.stem)
    result = export_notebook(notebook, output, names=args.names, default=args.default,
                             base_image=args.base_image, ca_bundle=args.ca_bundle)
    print(result)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from sieve_jupyter.serve import ServeSettings, serve_bundle

    settings = ServeSettings(
        host=args.host, port=args.port, workers=args.workers, default=args.default,
        insecure=args.insecure, queue_size=args.queue_size,
        max_body_bytes=args.max_body_bytes, inline_file_bytes=args.inline_file_bytes,
        keep_seconds=args.keep_seconds, port_file=args.port_file,
        access_log=args.access_log, busy_poll_us=args.busy_poll_us,
    )
    return serve_bundle(args.bundle, settings)


def _build(args: argparse.Namespace) -> int:
    from sieve_jupyter.bundle import read_bundle

    bundle = read_bundle(args.bundle)
    tag = args.tag or Path(bundle.root).name.lower().replace("_", "-")
    command = ["docker", "build", "-t", tag]
    if args.network:
        command += ["--network", args.network]
    command.append(str(bundle.root))
    print("+ " + " ".join(command), flush=True)
    return subprocess.call(command)


def _schema(args: argparse.Namespace) -> int:
    path = Path(__file__).parent / "spec" / "sieve-bundle.schema.json"
    sys.stdout.write(path.read_text())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (errors print their message, not a
    traceback: they already say what is wrong and how to fix it)."""
    args = _parser().parse_args(argv)
    handler = {"export": _export, "serve": _serve, "build": _build, "schema": _schema}
    try:
        return handler[args.command](args)
    except (SieveError, FileExistsError) as exc:
        print(f"sieve-jupyter {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
