"""The ``sieve-jupyter`` command: export notebooks to bundles, serve and build bundles.

sieve-jupyter export NOTEBOOK|FILE.py [-o DIR] [--name NAME ...] [--default NAME]
                              [--format bundle|model.yaml]
sieve-jupyter serve BUNDLE [--host 127.0.0.1] [--port 8000] [--workers N]
sieve-jupyter serve NOTEBOOK|FILE.py [same options]   # exported to a temporary bundle
sieve-jupyter serve model.yaml [--name NAME] [same options]
sieve-jupyter check model.yaml [--runtime] [--name NAME]
sieve-jupyter build BUNDLE [-t TAG] [--network host]
sieve-jupyter schema            # the JSON Schema of sieve.yaml
sieve-jupyter deploy | deployments | logs | undeploy   (see sieve_jupyter/deploy/_cli.py)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sieve_jupyter._errors import SieveError
from sieve_jupyter.deploy._cli import HANDLERS as DEPLOYMENT_HANDLERS
from sieve_jupyter.deploy._cli import add_commands as add_deployment_commands
from sieve_jupyter.serve._settings import SERVE_BACKENDS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sieve-jupyter",
        description="Turn notebook functions and models into bundles, and serve them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser(
        "export", help="capture a notebook's (or a .py file's) functions and models as a bundle"
    )
    export.add_argument("source", help="the notebook (.ipynb) or Python file (.py)")
    export.add_argument(
        "-o", "--output-dir", help="where the bundle goes (default: bundles/<notebook name>)"
    )
    export.add_argument(
        "--name",
        action="append",
        dest="names",
        metavar="NAME",
        help="a function or model to export (repeatable; default: all)",
    )
    export.add_argument("--default", help="the function that also answers /predictions")
    export.add_argument("--base-image", help="the image the bundle's Dockerfile starts FROM")
    export.add_argument("--ca-bundle", help="a PEM bundle the image must trust (TLS proxies)")
    export.add_argument(
        "--format",
        choices=["bundle", "model.yaml"],
        default="bundle",
        help="a bundle (default), or a model.yaml and its code (src/)",
    )

    serve = commands.add_parser(
        "serve", help="serve a bundle, a model.yaml, a notebook or a .py file over HTTP (Cog's API)"
    )
    serve.add_argument(
        "bundle",
        help="the bundle's folder (it holds sieve.yaml), a model.yaml (or a folder holding one), "
        "or a notebook or .py file (exported to a temporary bundle first)",
    )
    serve.add_argument(
        "--name",
        help="with a model.yaml: serve only this model (any name, "
        "for a universal ${model.name} entry)",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; others need a token)",
    )
    serve.add_argument("--port", type=int, default=8000, help="port (0: pick a free one)")
    serve.add_argument("--workers", type=int, default=1, help="warm workers per function")
    serve.add_argument(
        "--backend",
        choices=SERVE_BACKENDS,
        default="local",
        help="where the workers run: processes of this machine (default), or actors of a Ray "
        "cluster, spread over its machines (needs the ray extra)",
    )
    serve.add_argument(
        "--ray-address",
        help="with --backend ray: the cluster (ray://head:10001, auto, host:6379; default: "
        "RAY_ADDRESS, else a Ray started here)",
    )
    serve.add_argument("--default", help="the function that also answers /predictions")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without SIEVE_SERVE_TOKEN",
    )
    serve.add_argument(
        "--queue-size",
        type=int,
        default=64,
        help="predictions that may wait per function (more get 429)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=100 * 1024 * 1024,
        help="larger request bodies get 413",
    )
    serve.add_argument(
        "--inline-file-bytes",
        type=int,
        default=5 * 1024 * 1024,
        help="file outputs up to this size are data URLs, larger ones links",
    )
    serve.add_argument(
        "--keep-seconds",
        type=float,
        default=600.0,
        help="how long finished predictions can be fetched",
    )
    serve.add_argument("--port-file", help="write the port here once listening")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--busy-poll-us",
        type=int,
        help="microseconds workers poll for their next call before sleeping",
    )
    serve.add_argument(
        "--fd", type=int, help="serve this inherited listening socket instead of binding a port"
    )
    serve.add_argument(
        "--deployment",
        metavar="USER/NAME:VERSION",
        help="run as that deployment (set by sieve.deploy)",
    )

    build = commands.add_parser("build", help="build a bundle's Docker image")
    build.add_argument("bundle")
    build.add_argument("-t", "--tag", help="image tag (default: the bundle's folder name)")
    build.add_argument("--network", help="network for RUN steps (e.g. host)")

    commands.add_parser("schema", help="print the JSON Schema of sieve.yaml")
    add_deployment_commands(commands)
    _check_parser(commands)
    return parser


def _check_parser(commands: Any) -> None:
    check = commands.add_parser(
        "check", help="validate a model.yaml (and with --runtime, run each model's load once)"
    )
    check.add_argument("model_yaml", metavar="model.yaml", help="the model.yaml to check")
    check.add_argument(
        "--runtime",
        action="store_true",
        help="also import each model's code and call its load once (in a child "
        "process, in the code's directory)",
    )
    check.add_argument(
        "--name", help="check only this model (any name, for a universal ${model.name} entry)"
    )
    check.add_argument(
        "--refresh",
        action="store_true",
        help="fetch again what is cached (downloads, a branch's checkout)",
    )


def _export(args: argparse.Namespace) -> int:
    from sieve_jupyter.bundle import export_file

    source = Path(args.source)
    output = args.output_dir or str(Path("bundles") / source.stem)
    result = export_file(
        source,
        output,
        names=args.names,
        default=args.default,
        base_image=args.base_image,
        ca_bundle=args.ca_bundle,
        format=args.format,
    )
    print(result)
    return 0


def _serve_settings(args: argparse.Namespace) -> Any:
    from sieve_jupyter.serve import ServeSettings

    return ServeSettings(
        host=args.host,
        port=args.port,
        workers=args.workers,
        default=args.default,
        insecure=args.insecure,
        queue_size=args.queue_size,
        max_body_bytes=args.max_body_bytes,
        inline_file_bytes=args.inline_file_bytes,
        keep_seconds=args.keep_seconds,
        port_file=args.port_file,
        access_log=args.access_log,
        busy_poll_us=args.busy_poll_us,
        fd=args.fd,
        backend=args.backend,
        ray_address=args.ray_address,
    )


def _serve(args: argparse.Namespace) -> int:
    from sieve_jupyter.serve import serve_bundle

    path = Path(args.bundle)
    if path.suffix in (".ipynb", ".py"):
        return _serve_source(args, path)
    model_yaml = _model_yaml(path)
    if model_yaml is not None:
        return _serve_modelyaml(args, model_yaml)
    if args.name:
        print(
            "sieve-jupyter serve: --name applies to a model.yaml; a bundle serves all its "
            "functions (choose the default one with --default).",
            file=sys.stderr,
        )
        return 2
    if args.deployment:
        from sieve_jupyter.deploy._runner import run_deployment

        return run_deployment(args.bundle, _serve_settings(args), args.deployment)
    return serve_bundle(args.bundle, _serve_settings(args))


def _serve_source(args: argparse.Namespace, path: Path) -> int:
    """Serve a notebook's (or a .py file's) functions as `sieve-jupyter export` would bundle
    them: exported to a temporary folder, removed when the server stops (a way to try the
    bundle; `export` keeps one, `deploy` keeps it serving)."""
    from sieve_jupyter.bundle import export_file
    from sieve_jupyter.serve import require_server, serve_bundle

    if args.name or args.deployment:
        print(
            f"sieve-jupyter serve: {path} serves all its functions (choose the default one "
            "with --default); --name applies to a model.yaml.",
            file=sys.stderr,
        )
        return 2
    require_server(f"serving {path.name}")  # (before anything is exported)
    settings = _serve_settings(args)
    settings.validate()
    with tempfile.TemporaryDirectory(prefix="sieve-serve-") as folder:
        exported = export_file(path, Path(folder) / "bundle")
        print(exported, file=sys.stderr)
        assert exported.path is not None
        return serve_bundle(exported.path, settings)


def _model_yaml(path: Path) -> Path | None:
    """The model.yaml that `path` names (a .yaml file other than a bundle's sieve.yaml, or a
    folder with a model.yaml and no sieve.yaml), else None (a bundle)."""
    if path.is_dir():
        inside = path / "model.yaml"
        return inside if inside.is_file() and not (path / "sieve.yaml").exists() else None
    if path.suffix in (".yaml", ".yml") and path.name != "sieve.yaml":
        return path
    return None


def _serve_modelyaml(args: argparse.Namespace, path: Path) -> int:
    from sieve_jupyter.serve import serve_modelyaml

    return serve_modelyaml(path, _serve_settings(args), name=args.name)


def _check(args: argparse.Namespace) -> int:
    """Exit 0 when the file is valid (and with --runtime, every load ran), else 1."""
    from sieve_jupyter._errors import SpecError
    from sieve_jupyter.modelyaml import check, report

    try:
        checked = check(args.model_yaml, name=args.name, runtime=args.runtime, refresh=args.refresh)
    except SpecError as exc:  # a ModelYamlError lists every problem with its line
        print(f"sieve-jupyter check: {exc}", file=sys.stderr)
        return 1
    text, status = report(checked)
    print(text)
    if status == 0:
        what = "valid, load ran" if args.runtime else "valid"
        print(
            f"{args.model_yaml}: {what} ({len(checked)} model{'s' if len(checked) != 1 else ''})."
        )
    return status


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
    handler = {
        "export": _export,
        "serve": _serve,
        "build": _build,
        "schema": _schema,
        "check": _check,
        **DEPLOYMENT_HANDLERS,
    }
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
