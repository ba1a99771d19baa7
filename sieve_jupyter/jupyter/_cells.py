"""Reading a `%%sieve_function` / `%%sieve_model` cell: which definition it registers, and the
options that become decorator keywords.

Everything here runs *before* the cell executes, so a bad option or an ambiguous cell fails
with a usage error and leaves nothing half-registered.
"""

from __future__ import annotations

import ast
import shlex
from typing import Any

from IPython.core.error import UsageError

from sieve_jupyter.spec import Env, Metadata

__all__ = ["decorator_settings", "find_entry", "parse_gpu"]


def find_entry(cell: str, kind: str, entry: str | None) -> str:
    """The name of the top-level definition the cell registers.

    A `%%sieve_model` cell registers a class with ``__predict__``; a `%%sieve_function` cell a
    function (or, as in Sieve, a class with ``__predict__``). With several candidates, `entry`
    must name one.

    Raises:
        UsageError: the cell does not parse, defines no candidate, or is ambiguous.
    """
    try:
        tree = ast.parse(cell)
    except SyntaxError as exc:
        raise UsageError(f"the cell does not parse: {exc}") from None
    classes = [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(
            isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "__predict__"
            for item in node.body
        )
    ]
    functions = [
        node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    magic = "%%sieve_model" if kind == "model" else "%%sieve_function"
    candidates = classes if kind == "model" else functions + classes
    if entry is not None:
        if entry not in candidates:
            listing = ", ".join(candidates) or "none"
            raise UsageError(
                f"--entry {entry}: the cell defines no such {_what(kind)} (candidates: {listing})."
            )
        return entry
    if not candidates:
        raise UsageError(
            f"{magic}: the cell defines no {_what(kind)}. Fix: define "
            + ("a class with __setup__/__predict__." if kind == "model" else "a function.")
        )
    if len(candidates) > 1:
        raise UsageError(
            f"{magic}: the cell defines several candidates ({', '.join(candidates)}). "
            f"Fix: add --entry NAME to say which one to register."
        )
    return candidates[0]


def _what(kind: str) -> str:
    return "class with __predict__" if kind == "model" else "function or model class"


def parse_gpu(text: str | None) -> Any:
    """``T4``, ``T4:split=2`` or ``T4:2`` -> what the spec layer takes for ``gpu=``."""
    if text is None:
        return None
    kind, _, rest = text.partition(":")
    if not rest:
        return kind
    value = rest.removeprefix("split=")
    try:
        split = int(value)
    except ValueError:
        raise UsageError(
            f"--gpu {text}: expected KIND or KIND:split=N, e.g. --gpu T4:split=2."
        ) from None
    return {"kind": kind, "split": split}


def _env(items: list[str] | None) -> list[Env] | None:
    if not items:
        return None
    envs = []
    for item in items:
        name, has_default, default = item.partition("=")
        envs.append(Env(name=name, default=default if has_default else None))
    return envs


def decorator_settings(args: Any) -> dict[str, Any]:
    """Turn parsed magic options into the keywords `sieve.function` / `sieve.Model` take."""
    settings: dict[str, Any] = {
        "name": args.name,
        "gpu": parse_gpu(args.gpu),
        "machine_type": args.machine_type,
        "python_version": args.python_version,
        "python_packages": _flatten(args.python_packages),
        "system_packages": _flatten(args.system_packages),
        "cuda_version": args.cuda_version,
        "run_commands": args.run_command,
        "environment_variables": _env(args.env),
        "backend": args.backend,
        "workers": args.workers,
        "force_setup": args.fresh_setup,
    }
    if args.restart_on_error is not None:
        settings["restart_on_error"] = args.restart_on_error == "yes"
    meta = {
        "title": args.title,
        "description": args.description,
        "code_url": args.code_url,
        "image": args.image,
        "tags": _flatten(args.tag, commas=True),
        "readme": args.readme,
    }
    if any(v is not None for v in meta.values()):
        settings["metadata"] = Metadata(**{k: v for k, v in meta.items() if v is not None})
    return {k: v for k, v in settings.items() if v is not None}


def _flatten(values: list[str] | None, *, commas: bool = False) -> list[str] | None:
    """Options given as several words or one quoted string. Requirements keep their commas
    (``"numpy>=1,<2"``); tags may be written ``--tag a,b``."""
    if values is None:
        return None
    out: list[str] = []
    for value in values:
        for part in shlex.split(value):
            out.extend(p for p in part.split(",") if p) if commas else out.append(part)
    return out
