"""Efemarai-style ``model.yaml``: models defined by a repository, files and two entrypoints.

    models = sieve.load_yaml("model.yaml")      # {name: model handle}
    models["YOLOR-P6"].run(datapoints=[...])

A loaded model is a Sieve model like any other: its worker's ``__setup__`` imports the load
entrypoint from the code's root and calls it once; each ``.run()`` / ``.push()`` calls the
predict entrypoint with its inputs wired as the file says. Parsing and validation
(`_positions`, `_schema`, `_references`) are pure data; `_fetch` clones and downloads, `_code`
reads entrypoints without importing them, `_resolve` puts one entry together and `_adapter`
registers it through the SDK. ``model.schema.json`` is the published JSON Schema.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sieve_jupyter.modelyaml._check import CheckedModel, describe, report, run_load
from sieve_jupyter.modelyaml._documents import read_document, select_entries
from sieve_jupyter.modelyaml._fetch import cache_root
from sieve_jupyter.modelyaml._resolve import ResolvedModel, resolve_entry
from sieve_jupyter.modelyaml._schema import json_schema, json_schema_text

__all__ = [
    "SCHEMA_PATH",
    "CheckedModel",
    "ResolvedModel",
    "check",
    "json_schema",
    "json_schema_text",
    "load_yaml",
    "report",
    "resolve_yaml",
]

#: the published JSON Schema of model.yaml (generated from `_schema`; a test keeps it current)
SCHEMA_PATH = Path(__file__).with_name("model.schema.json")


def resolve_yaml(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
    environ: Mapping[str, str] | None = None,
) -> list[ResolvedModel]:
    """Read, validate and fetch the models of a model.yaml, without registering them.

    Args: as `load_yaml`; `environ` replaces ``os.environ`` for ``${NAME}`` variables.

    Raises:
        ModelYamlError: any problem, each with ``FILE:LINE:COL``, its key path and the fix.
        SpecError: the file cannot be read.
    """
    environ = os.environ if environ is None else environ
    document = read_document(Path(path), os.fspath(path), environ)
    cache = cache_root(cache_dir)
    return [
        resolve_entry(entry, environ, cache, refresh) for entry in select_entries(document, name)
    ]


def load_yaml(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    backend: str | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
) -> dict[str, Any]:
    """Load the models of an Efemarai-style model.yaml as Sieve models of this kernel.

    Each becomes a model handle (as ``@sieve.Model`` returns): ``.run()`` / ``.push()`` call
    its predict entrypoint on a warm worker, whose ``__setup__`` called load once. Remote
    repositories are cloned (shallow; a branch or a verified commit) and files fetched into a
    cache; nothing runs before the whole file checked out.

    Args:
        path: the model.yaml.
        name: load only this model; with a universal entry (``name: ${model.name}``), any
            name the file has no entry of its own for.
        backend, workers: as for ``@sieve.Model`` (``runtime.image`` is the Docker backend's
            base image).
        cache_dir: where clones and downloads are kept (default: ``$SIEVE_JUPYTER_CACHE_DIR``,
            else the platform's cache directory).
        refresh: fetch again what is cached (downloads, and a branch's checkout).

    Returns:
        ``{model name: handle}``, in the file's order.

    Raises:
        ModelYamlError: any problem in the file, each with ``FILE:LINE:COL``, its key path and
            the fix (a clone or download that fails is reported at its URL).
        SpecError: the file cannot be read.
    """
    from sieve_jupyter.modelyaml._adapter import register_model

    models = resolve_yaml(path, name=name, cache_dir=cache_dir, refresh=refresh)
    return {m.name: register_model(m, backend=backend, workers=workers) for m in models}


def check(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    runtime: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
) -> list[CheckedModel]:
    """Validate a model.yaml as `load_yaml` would, without registering anything; with
    `runtime`, also import each model's entrypoints and call its load once (in a child
    process, in the code's directory).

    Returns:
        One `CheckedModel` per model; with `runtime`, a failed load is in its ``load_error``.
        `report(...)` turns them into a command line's output and exit status.

    Raises:
        ModelYamlError, SpecError: as `load_yaml`.
    """
    models = resolve_yaml(path, name=name, cache_dir=cache_dir, refresh=refresh)
    return [run_load(m) if runtime else describe(m) for m in models]
