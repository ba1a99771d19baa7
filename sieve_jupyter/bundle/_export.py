"""Exporting: cells -> captured module -> specs (from a fresh interpreter) -> bundle on disk.

Specs are read by importing the captured module in a fresh `python` (no IPython), which also
proves that the module runs outside the notebook: a bundle that cannot import is never written.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sieve_jupyter._errors import ExportError
from sieve_jupyter._imports import require_extra
from sieve_jupyter.bundle._bundle import MODULE, BundleFunction, bundle_files, write_bundle
from sieve_jupyter.bundle._capture import Capture, capture
from sieve_jupyter.bundle._cells import Cell
from sieve_jupyter.spec import FunctionSpec

__all__ = [
    "FORMATS",
    "ExportResult",
    "cells_from_history",
    "cells_from_notebook",
    "export",
    "export_cells",
    "export_file",
    "export_notebook",
]

#: Run in a fresh interpreter, in the folder of the exported code: imports the captured module,
#: then says each entry's spec and which files of that folder the code needs beside itself:
#: the local modules it imports (at import time, or in a function body: those are found by
#: name without being imported) and what they import in turn, and the files its import reads
#: (a `readme=open("README.md").read()`, relative to the folder or to the module's
#: `__file__`, which is made to point there). Nothing outside that folder is taken, nor
#: anything of an installed environment inside it (a `.venv`), nor sieve-jupyter itself; what
#: may hold secrets (a hidden file such as `.env`, keys, credentials) is withheld and listed:
#: secrets reach a worker as `sieve.Env` values, never inside a bundle or an image.
_IMPORT_SCRIPT = textwrap.dedent("""\
    import ast, importlib, importlib.util, json, os, sys, sysconfig
    src, module, out, *entries = sys.argv[1:]
    root = os.path.realpath(os.getcwd())
    outside = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, src,
               *sysconfig.get_paths().values()) if p}
    reads = set()
    secret_names = {"credentials.json", "secrets.json", "secrets.toml", "secrets.yaml",
                    "netrc", "_netrc"}
    secret_ends = (".pem", ".key", ".p12", ".pfx", ".jks", ".keystore")

    def private(name):
        parts = name.split(os.sep)
        last = parts[-1].lower()
        return (any(p.startswith(".") for p in parts) or last in secret_names
                or last.endswith(secret_ends) or last.startswith("id_rsa"))

    def audit(event, args):
        if event == "open" and isinstance(args[0], str) and args[1] in ("r", "rb", "rt"):
            reads.add(os.path.join(root, args[0]))

    def local(path):
        path = os.path.realpath(path)
        if not path.startswith(root + os.sep) or not os.path.isfile(path):
            return None
        if any(path == o or path.startswith(o + os.sep) for o in outside):
            return None
        return os.path.relpath(path, root)

    def imports(path):
        names = set()
        for node in ast.walk(ast.parse(open(path, "rb").read())):
            if isinstance(node, ast.Import):
                names.update(a.name.partition(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.partition(".")[0])
        return names

    def module_files(name):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return []
        if spec is None or name == "sieve_jupyter" or not spec.origin:
            return []
        if not spec.submodule_search_locations:
            return [spec.origin]
        found = []  # a package: all its Python files
        for folder in spec.submodule_search_locations:
            for base, dirs, names in os.walk(folder):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                found += [os.path.join(base, n) for n in names if n.endswith(".py")]
        return found

    sys.addaudithook(audit)
    sys.path.insert(0, src)
    spec = importlib.util.spec_from_file_location(module, os.path.join(src, module + ".py"))
    namespace = importlib.util.module_from_spec(spec)
    # as if it were beside the files it reads (`open(os.path.dirname(__file__) + ...)`), as it
    # is in the bundle's src/
    namespace.__file__ = os.path.join(root, module + ".py")
    sys.modules[module] = namespace
    spec.loader.exec_module(namespace)
    specs = {entry: getattr(namespace, entry).spec.to_dict() for entry in entries}
    loaded = {m.__name__.partition(".")[0] for m in list(sys.modules.values())
              if local(getattr(m, "__file__", None) or "/")}
    captured = imports(os.path.join(src, module + ".py"))
    shadowed = module in captured and any(
        os.path.exists(os.path.join(root, module + end)) for end in (".py", "/__init__.py"))
    pending, seen = loaded | captured, {module}
    needed = {local(path) for path in reads if not path.endswith((".py", ".pyc"))}
    while pending:
        name = pending.pop()
        seen.add(name)
        for path in module_files(name):
            if (where := local(path)) is not None:
                needed.add(where)
                pending |= imports(path) - seen
    needed.discard(None)
    withheld = sorted(name for name in needed if private(name))
    with open(out, "w") as f:
        json.dump({"specs": specs, "ipython": "IPython" in sys.modules, "shadowed": shadowed,
                   "files": sorted(needed - set(withheld)), "withheld": withheld}, f)
""")


#: what an export can write: a bundle (sieve.yaml, Dockerfile, ...) or a model.yaml and its code
FORMATS = ("bundle", "model.yaml")


@dataclass(frozen=True)
class ExportResult:
    """What an export made: the bundle's folder, its functions, and the capture report.

    `format` is ``"bundle"`` or ``"model.yaml"``; `notes` are what the format could not carry
    over (a model.yaml has no place for packages, say), one sentence each.
    """

    path: Path | None
    functions: tuple[BundleFunction, ...]
    default: str
    capture: Capture
    files: dict[str, bytes]
    format: str = "bundle"
    notes: tuple[str, ...] = ()
    #: the files taken from the exported code's folder (local modules, files its import
    #: reads), by path there; they are in `files` under ``src/``
    local_files: tuple[str, ...] = ()
    #: files the code reads or imports from its folder that may hold secrets (a hidden file
    #: such as ``.env``, keys, credentials): never put in a bundle
    withheld: tuple[str, ...] = ()

    def __str__(self) -> str:
        names = ", ".join(f.name for f in self.functions)
        where = f" in {self.path}" if self.path is not None else ""
        what = " as a model.yaml" if self.format == "model.yaml" else ""
        notes = "".join(f"\nNote: {note}" for note in self.notes)
        taken = (
            f"\nfrom its folder (imported, or read by its import): {', '.join(self.local_files)}"
            if self.local_files
            else ""
        )
        withheld = (
            f"\nnot taken, as it may hold secrets: {', '.join(self.withheld)} (pass secrets "
            "as sieve.Env values, which reach the workers from the server's environment)"
            if self.withheld
            else ""
        )
        return (
            f"Exported {names}{what}{where} (default: {self.default}).\n"
            + self.capture.report_text()
            + taken
            + withheld
            + notes
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


@dataclass(frozen=True)
class _Imported:
    """What importing the captured module in a fresh interpreter told (see `_IMPORT_SCRIPT`)."""

    specs: dict[str, FunctionSpec]
    #: the files of the exported code's folder it needs beside itself, by path there
    files: dict[str, bytes]
    #: files it needs that may hold secrets, left out (by path in the folder)
    withheld: tuple[str, ...]


def _specs(source: str, entries: Sequence[str], cwd: Path | None) -> _Imported:
    """Import the captured module in a fresh interpreter, in `cwd`: each entry's spec, and
    what the code needs of `cwd` beside itself."""
    with tempfile.TemporaryDirectory(prefix="sieve-export-") as work:
        src = Path(work) / "src"
        src.mkdir()
        (src / f"{MODULE}.py").write_text(source)
        out = Path(work) / "specs.json"
        env = dict(os.environ)
        paths = [p or os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        done = subprocess.run(
            [sys.executable, "-c", _IMPORT_SCRIPT, str(src), MODULE, str(out), *entries],
            cwd=str(cwd) if cwd is not None else work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise ExportError(
                "the captured module does not import with plain Python, so it could not be "
                f"served:\n{tail}\nFix: {_import_fix(done.stderr)}"
            )
        data = json.loads(out.read_text())
    specs = {entry: FunctionSpec.from_dict(spec) for entry, spec in data["specs"].items()}
    if data["shadowed"]:
        raise ExportError(
            f"the code imports its folder's module {MODULE!r}, and {MODULE}.py is the module the "
            f"bundle makes of the exported code, which would import itself instead. Fix: "
            f"rename {MODULE}.py (and the imports of it)."
        )
    if cwd is None:
        return _Imported(specs, {}, ())
    files = {name: (cwd / name).read_bytes() for name in data["files"]}
    return _Imported(specs, files, tuple(data["withheld"]))


def _import_fix(stderr: str) -> str:
    """How to mend a captured module that did not import (its error is the end of `stderr`)."""
    missing = re.search(r"ModuleNotFoundError: No module named '([^']+)'\s*$", stderr)
    if missing is not None:
        name = missing.group(1)
        return (
            f"install {name.partition('.')[0]} where you export (the export imports the code "
            f"to read its specs), or import {name} inside the function or __setup__ that "
            "uses it, where the workers' own packages are."
        )
    return (
        "make the cells it took (see the report) run on their own, or tag the cell that "
        "defines what is missing `sieve-export`."
    )


def export_cells(
    cells: Sequence[Cell],
    directory: str | os.PathLike[str] | None,
    *,
    names: Sequence[str] | None = None,
    default: str | None = None,
    origin: str = "the notebook",
    cwd: str | os.PathLike[str] | None = None,
    base_image: str | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    format: str = "bundle",
) -> ExportResult:
    """Capture `cells` and write the bundle (to `directory`; None only builds the files);
    with ``format="model.yaml"``, a model.yaml and its code instead (see `_modelyaml`).

    Raises:
        ExportError: the code cannot be captured or does not import on its own; for a
            model.yaml, a function it cannot call by name (the message says which and why).
        SpecError: `default` is not exported, the functions cannot share an image, or an
            unknown `format` (or ``ca_bundle`` with a model.yaml, which has no Dockerfile).
    """
    from sieve_jupyter._errors import SpecError

    if format not in FORMATS:
        raise SpecError(
            "format",
            f"{format!r} is not an export format.",
            "use format='bundle' (the default) or format='model.yaml'.",
        )
    if format == "model.yaml" and ca_bundle is not None:
        raise SpecError(
            "ca_bundle",
            "applies to a bundle's Dockerfile; a model.yaml has none.",
            "leave it out (the Docker backend takes SIEVE_DOCKER_CA_BUNDLE).",
        )
    captured = capture(cells, names, origin=origin)
    imported = _specs(
        captured.source, [t.entry for t in captured.targets], Path(cwd) if cwd is not None else None
    )
    local_files = imported.files
    functions = tuple(
        BundleFunction(entry=t.entry, spec=imported.specs[t.entry]) for t in captured.targets
    )
    by_name = {f.name: f for f in functions}
    if default is None:
        default = functions[0].name
    elif default not in by_name:
        by_entry = {f.entry: f.name for f in functions}
        if default not in by_entry:
            raise SpecError(
                "default",
                f"{default!r} is not among the exported functions ({', '.join(by_name)}).",
                "name one of them.",
            )
        default = by_entry[default]
    if format == "model.yaml":
        from sieve_jupyter.bundle._modelyaml import MARKER, modelyaml_files

        exported = modelyaml_files(
            captured, functions, origin=origin, base_image=base_image, local_files=local_files
        )
        path = (
            write_bundle(exported.files, directory, marker=MARKER, what="a model.yaml export")
            if directory is not None
            else None
        )
        return ExportResult(
            path=path,
            functions=functions,
            default=default,
            capture=captured,
            files=exported.files,
            format=format,
            notes=exported.notes,
            local_files=tuple(local_files),
            withheld=imported.withheld,
        )
    files = bundle_files(
        captured.source,
        functions,
        default=default,
        source=origin,
        local_files=local_files,
        base_image=base_image,
        ca_bundle=Path(ca_bundle) if ca_bundle is not None else None,
    )
    path = write_bundle(files, directory) if directory is not None else None
    return ExportResult(
        path=path,
        functions=functions,
        default=default,
        capture=captured,
        files=files,
        local_files=tuple(local_files),
        withheld=imported.withheld,
    )


def cells_from_notebook(notebook: Any) -> list[Cell]:
    """The code cells of an `nbformat` notebook, numbered as they appear."""
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    return [
        Cell(number, c.source, frozenset(c.get("metadata", {}).get("tags", [])))
        for number, c in enumerate(cells, 1)
    ]


def export_notebook(
    path: str | os.PathLike[str], directory: str | os.PathLike[str] | None, **options: Any
) -> ExportResult:
    """Export the sieve functions and models of the notebook file at `path`.

    Takes the options of `export_cells`.
    """
    require_extra("export", ("nbformat",), "exporting a notebook file")
    import nbformat

    notebook_path = Path(path)
    notebook = nbformat.read(notebook_path, as_version=4)  # type: ignore[no-untyped-call]
    options.setdefault("cwd", notebook_path.resolve().parent)
    return export_cells(
        cells_from_notebook(notebook), directory, origin=notebook_path.name, **options
    )


def export_file(
    path: str | os.PathLike[str], directory: str | os.PathLike[str] | None, **options: Any
) -> ExportResult:
    """Export the sieve functions and models of a notebook (``.ipynb``) or of a Python file
    (``.py``, such as the ``main.py`` of a project written for Sieve), as
    ``sieve-jupyter export`` and ``deploy`` do. Takes the options of `export_cells`.

    Raises:
        ExportError: the file is neither, or does not exist; or its code cannot be captured.
    """
    file = Path(path)
    if file.suffix not in (".ipynb", ".py"):
        raise ExportError(
            f"{file} is neither a notebook (.ipynb) nor a Python file (.py). Fix: name the "
            "notebook or the .py file that defines the functions."
        )
    if not file.is_file():
        raise ExportError(f"there is no file {file}. Fix: check the path.")
    if file.suffix == ".ipynb":
        return export_notebook(file, directory, **options)
    options.setdefault("cwd", file.resolve().parent)
    return export_cells(cells_from_script(file), directory, origin=file.name, **options)


def cells_from_script(path: Path) -> list[Cell]:
    """A Python file as one cell (its statements are captured one by one, as a cell's are)."""
    return [Cell(1, path.read_text(), label=path.name)]


def cells_from_history(shell: Any) -> list[Cell]:
    """A kernel's executed cells, in execution order, as ``In [n]`` cells (a cell run again
    unchanged counts once, at its last run)."""
    raw: list[str] = list(shell.history_manager.input_hist_raw)
    last: dict[str, int] = {}
    for number, source in enumerate(raw):
        if source.strip():
            last[source] = number
    return [Cell(number, raw[number], label=f"In [{number}]") for number in sorted(last.values())]


def export(
    functions: Any, directory: str | os.PathLike[str] | None, **options: Any
) -> ExportResult:
    """Turn functions and models into a bundle that serves them without Jupyter.

    ``sieve.export(Adder, "bundles/adder")`` captures, from the running notebook (or the file
    the function is defined in), the cells that define `Adder` and those it needs; reads its
    spec by importing that code in a fresh Python; and writes the bundle: ``sieve.yaml``,
    ``src/``, ``requirements.txt``, ``Dockerfile``, ``openapi.json``, ``README.md``.

    Args:
        functions: a handle (``Adder``), a name (``"adder"``), or a list of them; the first is
            the default function (it also answers ``/predictions``).
        directory: where the bundle goes (an existing bundle there is replaced); None only
            makes the files (`ExportResult.files`).
        **options: ``default``, ``base_image`` and ``ca_bundle`` (for the image), as for
            `sieve-jupyter export`; ``format="model.yaml"`` writes a model.yaml and its code
            (``src/``) instead of a bundle, loadable with `sieve.load_yaml`.

    Raises:
        ExportError: the code cannot be captured (the message names the cell and the name).
    """
    items = list(functions) if isinstance(functions, (list, tuple)) else [functions]
    if not items:
        raise ExportError("nothing to export. Fix: pass a function or model (or a list).")
    names: list[str] = []
    objects: list[Any] = []
    for item in items:
        if isinstance(item, str):
            names.append(item.rpartition("/")[2])
            objects.append(None)
        else:
            spec = getattr(item, "spec", None)
            if not isinstance(spec, FunctionSpec):
                raise ExportError(
                    f"{item!r} is not a sieve function or model. Fix: pass the handle that "
                    "@sieve.function / @sieve.Model returned, or its name."
                )
            names.append(spec.name)
            objects.append(getattr(item, "__wrapped__", None))
    options.setdefault("default", names[0])
    cells, origin, cwd = _source_of(objects)
    options.setdefault("cwd", cwd)
    return export_cells(cells, directory, names=names, origin=origin, **options)


def _source_of(objects: Sequence[Any]) -> tuple[list[Cell], str, Path]:
    """Where the code lives: the running kernel's cells, or the file of the first object."""
    for obj in objects:
        if obj is None or getattr(obj, "__module__", "__main__") == "__main__":
            continue  # defined in the notebook (or a script run as __main__): its cells
        try:
            filename = inspect.getsourcefile(obj)
        except (TypeError, OSError):
            filename = None
        if filename and os.path.isfile(filename) and filename.endswith(".py"):
            path = Path(filename)
            return cells_from_script(path), path.name, path.resolve().parent
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:
        get_ipython = None  # type: ignore[assignment]
    shell = get_ipython() if get_ipython is not None else None
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if shell is None and script and script.endswith(".py") and os.path.isfile(script):
        # a plain `python script.py`: its functions are captured from the script itself
        path = Path(script)
        return cells_from_script(path), path.name, path.resolve().parent
    if shell is None:
        raise ExportError(
            "cannot find the code to export: not in IPython or Jupyter, and the functions "
            "were not defined in a .py file. Fix: export a notebook file with "
            "`sieve-jupyter export NOTEBOOK` (or `jupyter nbconvert --to sieve-bundle`)."
        )
    return cells_from_history(shell), "a Jupyter kernel's cells", Path.cwd()
