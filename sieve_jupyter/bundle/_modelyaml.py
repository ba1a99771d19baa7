"""Export to a model.yaml (the Efemarai format): captured code -> ``model.yaml`` + ``src/``.

Layout::

    model.yaml               one entry per exported function or model; its code is src/
    src/main.py              the captured module (as in a bundle)
    src/sieve_entrypoints.py generated: load_<entry>() and predict_<entry>(model, ...)
    src/requirements.txt     the functions' python_packages, when they have any

Each entry's ``load`` builds the model (its ``__setup__`` runs once per worker) and names the
`sieve.Env` variables it declares as ``${NAME}`` inputs (names only: the loader hands the
values to the worker); ``predict`` binds each parameter to ``${inputs.NAME}``. Before anything
is written the files are loaded back as `load_yaml` would (without running them), and the
loaded model's schemas are compared with the original's: what differs is reported.
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sieve_jupyter._errors import ExportError, SieveError
from sieve_jupyter.bundle._bundle import MODULE, BundleFunction
from sieve_jupyter.bundle._capture import Capture
from sieve_jupyter.bundle._yamlcode import ENTRY_MODULE, ExportedEntry, entry_module, read_entry
from sieve_jupyter.spec import FunctionSpec
from sieve_jupyter.spec._validate import current_python_version

__all__ = ["MARKER", "YAML_FILE", "ModelYamlExport", "modelyaml_files"]

YAML_FILE = "model.yaml"
#: the file that tells a folder is a model.yaml export (which a new export may replace)
MARKER = f"src/{ENTRY_MODULE}.py"
#: where the code is, relative to the model.yaml (a local repository, used in place)
CODE_DIR = "src"


@dataclass(frozen=True)
class ModelYamlExport:
    """The files of a model.yaml export, and what the format could not carry over."""

    files: dict[str, bytes]
    notes: tuple[str, ...]


def _runtime(entry: ExportedEntry, base_image: str | None) -> dict[str, Any]:
    spec = entry.function.spec
    runtime: dict[str, Any] = {}
    image = base_image or spec.environment.base_image
    if image:
        runtime["image"] = image
    if spec.gpu is not None and not spec.gpu.is_cpu:
        runtime["device"] = "gpu"
        runtime["gpu"] = spec.gpu.to_dict()
    load: dict[str, Any] = {"entrypoint": f"{ENTRY_MODULE}:{entry.load}"}
    if spec.env:
        # names only: the loader declares each as a sieve.Env, read by the worker
        load["inputs"] = [{"name": e.name, "value": f"${{{e.name}}}"} for e in spec.env]
    load["output"] = {"name": "model"}
    inputs = [{"name": entry.loaded, "value": "${model.runtime.load.output.model}"}]
    inputs += [{"name": p.name, "value": f"${{inputs.{p.name}}}"} for p in entry.parameters]
    runtime["load"] = load
    runtime["predict"] = {
        "entrypoint": f"{ENTRY_MODULE}:{entry.predict}",
        "inputs": inputs,
        "output": {"name": "prediction"},
    }
    return runtime


def _document(entries: Sequence[ExportedEntry], origin: str, base_image: str | None) -> str:
    models = []
    for entry in entries:
        spec = entry.function.spec
        model: dict[str, Any] = {"name": spec.name}
        description = spec.metadata.description or spec.metadata.title
        if description:
            model["description"] = description
        model["repository"] = {"url": CODE_DIR}
        model["runtime"] = _runtime(entry, base_image)
        models.append(model)
    names = ", ".join(e.function.name for e in entries)
    header = (
        f"# Exported by sieve-jupyter from {origin}: {names}.\n"
        '# Load it with sieve.load_yaml("model.yaml") (or %sieve load model.yaml), or serve '
        "it with\n# `sieve-jupyter serve model.yaml`. Its code is in src/: main.py (captured) "
        f"and\n# {ENTRY_MODULE}.py (the generated load and predict entrypoints).\n"
    )
    body: str = yaml.safe_dump({"models": models}, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def _environment_notes(functions: Sequence[BundleFunction]) -> list[str]:
    """What the format cannot say about the functions' environments (said, never dropped)."""
    notes: list[str] = []
    for function in functions:
        spec = function.spec
        env = spec.environment
        lost = []
        if env.system_packages:
            lost.append(f"system_packages ({', '.join(env.system_packages)})")
        if env.run_commands:
            lost.append("run_commands")
        if env.cuda_version and (spec.gpu is None or spec.gpu.is_cpu):
            lost.append(f"cuda_version {env.cuda_version}")
        if env.python_version != current_python_version():
            lost.append(f"python_version {env.python_version}")
        if env.python_packages:
            notes.append(
                f"{spec.name}: python_packages are not part of the model.yaml format; they are "
                "in src/requirements.txt. Install them where the model runs (this environment, "
                "or the runtime.image)."
            )
        if lost:
            notes.append(
                f"{spec.name}: {', '.join(lost)} cannot be said in a model.yaml; the runtime "
                "image (--base-image, written as runtime.image) must provide them."
            )
        if not spec.restart_on_error:
            notes.append(
                f"{spec.name}: restart_on_error=False is not part of the format; the loaded "
                "model restarts its worker after an error (load runs again)."
            )
        for variable in spec.env:
            if variable.default is not None:
                notes.append(
                    f"{spec.name}: sieve.Env {variable.name} has a default, which a model.yaml "
                    f"cannot give: loading it needs {variable.name} set."
                )
    return notes


def _requirements(functions: Sequence[BundleFunction]) -> bytes | None:
    packages = list(dict.fromkeys(p for f in functions for p in f.spec.environment.python_packages))
    return ("\n".join(packages) + "\n").encode() if packages else None


def _compare(original: FunctionSpec, loaded: FunctionSpec) -> list[str]:
    """How the loaded model's call schema differs from the original's (one note each)."""
    notes: list[str] = []
    before = original.inputs.get("properties", {})
    after = loaded.inputs.get("properties", {})
    for name, prop in before.items():
        if after.get(name) == prop:
            continue
        shown = json.dumps(after.get(name), sort_keys=True)
        notes.append(
            f"{original.name}: the loaded model's argument {name!r} is described as {shown}, "
            f"not {json.dumps(prop, sort_keys=True)}: the loader reads hints only from "
            "builtins, typing, collections.abc, pathlib and sieve's file types, so its form "
            "field takes JSON."
        )
    if sorted(original.inputs.get("required", [])) != sorted(loaded.inputs.get("required", [])):
        notes.append(
            f"{original.name}: the loaded model requires "
            f"{sorted(loaded.inputs.get('required', []))}, the original "
            f"{sorted(original.inputs.get('required', []))}."
        )
    if original.output != loaded.output:
        notes.append(
            f"{original.name}: the loaded model's result is described as "
            f"{json.dumps(loaded.output, sort_keys=True)}, not "
            f"{json.dumps(original.output, sort_keys=True)} (its return hint is not "
            "one the loader reads)."
        )
    return notes


def _load_back(files: dict[str, bytes], functions: Sequence[BundleFunction]) -> list[str]:
    """Load the files as `load_yaml` would, without registering or running them; return how
    each loaded model's schemas differ from its original's.

    Raises:
        ExportError: they do not load (a bug of this exporter: the message says what broke).
    """
    from sieve_jupyter.modelyaml import resolve_yaml
    from sieve_jupyter.modelyaml._adapter import model_class, model_spec

    # declared variables need a value to load; a placeholder, never the real one
    environ = {**os.environ, **{e.name: "-" for f in functions for e in f.spec.env}}
    with tempfile.TemporaryDirectory(prefix="sieve-modelyaml-") as work:
        root = Path(work)
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        try:
            models = resolve_yaml(root / YAML_FILE, environ=environ, cache_dir=root / ".cache")
            loaded = {m.name: model_spec(m, model_class(m)) for m in models}
        except SieveError as exc:
            raise ExportError(
                f"the model.yaml written for {', '.join(f.name for f in functions)} does not "
                f"load back:\n{exc}\nFix: export a bundle (format='bundle') instead, and report "
                "this as a bug of the model.yaml export."
            ) from None
    notes: list[str] = []
    for function in functions:
        notes += _compare(function.spec, loaded[function.name])
    return notes


def modelyaml_files(
    captured: Capture,
    functions: Sequence[BundleFunction],
    *,
    origin: str,
    base_image: str | None = None,
    local_files: dict[str, bytes] | None = None,
) -> ModelYamlExport:
    """The files of a model.yaml export of `functions` (captured in `captured`), with the
    `local_files` the code needs beside it (see `bundle_files`) in its code folder.

    Raises:
        ExportError: a function that a model.yaml cannot call the same way (it streams, is
            async, takes ``*args``, ``**kwargs`` or positional-only parameters), naming it
            and the fix.
    """
    tree = ast.parse(captured.source)
    cells = {t.entry: t.cell for t in captured.targets}
    entries = [read_entry(tree, f, cells.get(f.entry, origin)) for f in functions]
    files: dict[str, bytes] = {
        YAML_FILE: _document(entries, origin, base_image).encode(),
        **{f"{CODE_DIR}/{name}": data for name, data in (local_files or {}).items()},
        f"{CODE_DIR}/{MODULE}.py": captured.source.encode(),
        f"{CODE_DIR}/{ENTRY_MODULE}.py": entry_module(entries, tree, origin).encode(),
    }
    requirements = _requirements(functions)
    if requirements is not None:
        files[f"{CODE_DIR}/requirements.txt"] = requirements
    notes = _environment_notes(functions) + _load_back(files, functions)
    return ModelYamlExport(dict(sorted(files.items())), tuple(notes))
