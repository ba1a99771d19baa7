"""Exporting: cells -> captured module -> specs (from a fresh interpreter) -> bundle on disk.

Specs are read by importing the captured module in a fresh `python` (no IPython), which also
proves that the module runs outside the notebook: a bundle that cannot import is never written.
"""

from __future__ import annotations

import inspect
import json
import os
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
    "export_notebook",
]

_IMPORT_SCRIPT = textwrap.dedent("""\
    import importlib, json, sys
    src, module, out, *entries = sys.argv[1:]
    sys.path.insert(0, src)
    namespace = importlib.import_module(module)
    specs = {entry: getattr(namespace, entry).spec.to_dict() for entry in entries}
    with open(out, "w") as f:
        json.dump({"specs": specs, "ipython": "IPython" in sys.modules}, f)
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

    def __str__(self) -> str:
        names = ", ".join(f.name for f in self.functions)
        where = f" in {self.path}" if self.path is not None else ""
        what = " as a model.yaml" if self.format == "model.yaml" else ""
        notes = "".join(f"\nNote: {note}" for note in self.notes)
        return (
            f"Exported {names}{what}{where} (default: {self.default}).\n"
            + self.capture.report_text()
            + notes
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def _specs(source: str, entries: Sequence[str], cwd: Path | None) -> dict[str, FunctionSpec]:
    """Import the captured module in a fresh interpreter; return each entry's spec."""
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
                f"served:\n{tail}\nFix: make the cells it took (see the report) run on their "
                "own, or tag the cell that defines what is missing `sieve-export`."
            )
        data = json.loads(out.read_text())
    return {entry: FunctionSpec.from_dict(spec) for entry, spec in data["specs"].items()}


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
    specs = _specs(
        captured.source, [t.entry for t in captured.targets], Path(cwd) if cwd is not None else None
    )
    functions = tuple(BundleFunction(entry=t.entry, spec=specs[t.entry]) for t in captured.targets)
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

        exported = modelyaml_files(captured, functions, origin=origin, base_image=base_image)
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
        )
    files = bundle_files(
        captured.source,
        functions,
        default=default,
        source=origin,
        base_image=base_image,
        ca_bundle=Path(ca_bundle) if ca_bundle is not None else None,
    )
    path = write_bundle(files, directory) if directory is not None else None
    return ExportResult(
        path=path, functions=functions, default=default, capture=captured, files=files
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
            text = Path(filename).read_text()
            return (
                [Cell(1, text, label=Path(filename).name)],
                Path(filename).name,
                Path(filename).resolve().parent,
            )
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:
        get_ipython = None  # type: ignore[assignment]
    shell = get_ipython() if get_ipython is not None else None
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if shell is None and script and script.endswith(".py") and os.path.isfile(script):
        # a plain `python script.py`: its functions are captured from the script itself
        path = Path(script)
        return [Cell(1, path.read_text(), label=path.name)], path.name, path.resolve().parent
    if shell is None:
        raise ExportError(
            "cannot find the code to export: not in IPython or Jupyter, and the functions "
            "were not defined in a .py file. Fix: export a notebook file with "
            "`sieve-jupyter export NOTEBOOK` (or `jupyter nbconvert --to sieve-bundle`)."
        )
    return cells_from_history(shell), "a Jupyter kernel's cells", Path.cwd()
