"""The deployment commands of ``sieve-jupyter``:

sieve-jupyter deploy NOTEBOOK|BUNDLE [--name NAME] [--backend local|docker|ray] [--workers N]
sieve-jupyter deployments [--json] [--user USER]
sieve-jupyter logs NAME [-n N] [-f]
sieve-jupyter undeploy NAME
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sieve_jupyter.deploy._options import add_arguments, arguments

__all__ = ["HANDLERS", "add_commands"]


def add_commands(commands: Any) -> None:
    """Add the deployment subcommands to the `sieve-jupyter` parser's subparsers."""
    deploy = commands.add_parser(
        "deploy", help="deploy a notebook's functions (or a bundle) so they serve detached"
    )
    deploy.add_argument(
        "source", help="a notebook (.ipynb), a Python file (.py) or a bundle's folder"
    )
    deploy.add_argument(
        "--name",
        action="append",
        dest="names",
        metavar="NAME",
        help="a notebook's function to deploy (repeatable; the first names "
        "the deployment; default: all)",
    )
    add_arguments(deploy, backend="local", workers=1)
    deploy.add_argument("--user", help="the user part of its name (default: yours)")

    listing = commands.add_parser("deployments", help="this machine's deployments, with health")
    listing.add_argument("--json", action="store_true", help="as JSON (no tokens)")
    listing.add_argument("--user", help="only this user's")

    logs = commands.add_parser("logs", help="a deployment's server and worker logs")
    logs.add_argument("name", help="user/name (or user/name:version)")
    logs.add_argument("-n", "--lines", type=int, default=100, help="lines from the end")
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new lines (across redeploys) until Ctrl-C",
    )

    undeploy = commands.add_parser("undeploy", help="stop a deployment and remove all of it")
    undeploy.add_argument("name", help="user/name (every version) or user/name:version")


def _deploy(args: argparse.Namespace) -> int:
    from sieve_jupyter._config import configure
    from sieve_jupyter.deploy._deploy import _export_options, deploy_bundle
    from sieve_jupyter.deploy._options import DeployOptions

    if args.user:
        configure(user=args.user)
    source = Path(args.source)
    if source.is_dir():
        from sieve_jupyter.bundle import read_bundle

        bundle = read_bundle(source)
        files = {
            p.relative_to(bundle.root).as_posix(): p.read_bytes()
            for p in sorted(bundle.root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        }
        functions, default = bundle.functions, bundle.default
        if args.names:
            print(
                "sieve-jupyter deploy: --name picks functions of a notebook; a bundle is "
                "deployed whole.",
                file=sys.stderr,
            )
            return 2
    else:
        from sieve_jupyter.bundle import export_file

        exported = export_file(source, None, names=args.names, **_export_options(args.backend))
        files, functions, default = exported.files, exported.functions, exported.default
    result = deploy_bundle(files, functions, default, DeployOptions(**arguments(args)))
    print(result)
    return 0


def _deployments(args: argparse.Namespace) -> int:
    from sieve_jupyter.deploy._listing import deployments

    found = deployments(args.user)
    if args.json:
        print(json.dumps([d.describe() for d in found], indent=2))
    else:
        print(repr(found))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from sieve_jupyter.deploy._logs import deployment_logs

    for line in deployment_logs(args.name, lines=args.lines, follow=args.follow):
        sys.stdout.write(line)
        sys.stdout.flush()
    return 0


def _undeploy(args: argparse.Namespace) -> int:
    from sieve_jupyter.deploy._deploy import undeploy

    undeploy(args.name)
    return 0


HANDLERS = {"deploy": _deploy, "deployments": _deployments, "logs": _logs, "undeploy": _undeploy}
