"""``%sieve export NAME... DIR [--format model.yaml]``: the export command of the notebook's
magic."""

from __future__ import annotations

import argparse
from typing import Any

from sieve_jupyter.bundle._export import ExportResult, export

__all__ = ["export_command"]


def export_command(words: list[str]) -> ExportResult:
    """Export functions of this kernel (by name) into the bundle folder given last."""
    from IPython.core.error import UsageError

    parser = argparse.ArgumentParser(prog="%sieve export", add_help=False, exit_on_error=False)
    parser.add_argument("items", nargs="+")
    parser.add_argument("--default")
    parser.add_argument("--base-image")
    parser.add_argument("--ca-bundle")
    parser.add_argument("--format", choices=["bundle", "model.yaml"])
    try:
        args = parser.parse_args(words)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise UsageError(f"%sieve export NAME... DIR: {exc}") from None
    if len(args.items) < 2:
        raise UsageError(
            "%sieve export NAME... DIR: give the function(s), then the folder, "
            "e.g. %sieve export adder bundles/adder"
        )
    *names, directory = args.items
    options: dict[str, Any] = {
        k: v
        for k, v in (
            ("default", args.default),
            ("base_image", args.base_image),
            ("ca_bundle", args.ca_bundle),
            ("format", args.format),
        )
        if v
    }
    result = export(names, directory, **options)
    print(result)
    return result
