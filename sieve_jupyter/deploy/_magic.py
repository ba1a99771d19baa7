"""The deployment commands of the ``%sieve`` magic: deploy, deployments, undeploy, and
``logs NAME --deployment``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from sieve_jupyter.deploy._deploy import deploy, undeploy
from sieve_jupyter.deploy._listing import deployments
from sieve_jupyter.deploy._logs import deployment_logs
from sieve_jupyter.deploy._options import add_arguments, arguments

__all__ = ["COMMANDS"]


def _parse(
    prog: str, usage: str, parser: argparse.ArgumentParser, words: list[str]
) -> argparse.Namespace:
    from IPython.core.error import UsageError

    try:
        return parser.parse_args(words)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise UsageError(f"{prog} {usage}: {exc}") from None


def _parser(prog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, add_help=False, exit_on_error=False)


def deploy_command(words: list[str]) -> Any:
    """``%sieve deploy NAME... [--backend B] [--workers N] [--host H] [--port P] [--force]``"""
    parser = _parser("%sieve deploy")
    parser.add_argument("names", nargs="+")
    add_arguments(parser, backend=None, workers=None)  # (default: as registered)
    args = _parse("%sieve deploy", "NAME... [--backend B] [--workers N]", parser, words)
    result = deploy(args.names, **arguments(args))
    print(result)
    return None


def deployments_command(words: list[str]) -> Any:
    """``%sieve deployments [--user USER]``"""
    parser = _parser("%sieve deployments")
    parser.add_argument("--user")
    args = _parse("%sieve deployments", "[--user USER]", parser, words)
    return deployments(args.user)


def undeploy_command(words: list[str]) -> Any:
    """``%sieve undeploy USER/NAME[:VERSION]``"""
    parser = _parser("%sieve undeploy")
    parser.add_argument("name")
    args = _parse("%sieve undeploy", "USER/NAME", parser, words)
    undeploy(args.name)
    return None


def logs_command(words: list[str]) -> Any:
    """``%sieve logs NAME --deployment [-n N] [-f]``: follows until the cell is stopped."""
    parser = _parser("%sieve logs")
    parser.add_argument("name")
    parser.add_argument("-n", "--lines", type=int, default=100)
    parser.add_argument("-f", "--follow", action="store_true")
    args = _parse("%sieve logs", "NAME --deployment [-n N] [-f]", parser, words)
    try:
        for line in deployment_logs(args.name, lines=args.lines, follow=args.follow):
            print(line, end="", flush=True)
    except KeyboardInterrupt:
        pass  # (the stop button ends a follow)
    return None


COMMANDS: dict[str, Callable[[list[str]], Any]] = {
    "deploy": deploy_command,
    "deployments": deployments_command,
    "undeploy": undeploy_command,
    "logs --deployment": logs_command,
}
