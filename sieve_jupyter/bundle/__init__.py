"""Export: notebook (or kernel, or script) -> a bundle that builds and serves without Jupyter.

    sieve.export(Adder, "bundles/adder")              # from a running notebook
    export_file("quickstart.ipynb", "bundles/q")      # from a notebook or a .py file
                                                      # (`sieve-jupyter export`)
    read_bundle("bundles/q")                          # validated, with line numbers on errors

The nbconvert exporter (``--to sieve-bundle``) lives in `_nbconvert` (it needs nbconvert).
"""

from __future__ import annotations

from sieve_jupyter.bundle._bundle import (
    Bundle,
    BundleFunction,
    bundle_files,
    merged_environment,
    read_bundle,
    write_bundle,
)
from sieve_jupyter.bundle._capture import Capture, Target, capture
from sieve_jupyter.bundle._cells import Cell
from sieve_jupyter.bundle._export import (
    ExportResult,
    cells_from_history,
    cells_from_notebook,
    export,
    export_cells,
    export_file,
    export_notebook,
)

__all__ = [
    "Bundle",
    "BundleFunction",
    "Capture",
    "Cell",
    "ExportResult",
    "Target",
    "bundle_files",
    "capture",
    "cells_from_history",
    "cells_from_notebook",
    "export",
    "export_cells",
    "export_file",
    "export_notebook",
    "merged_environment",
    "read_bundle",
    "write_bundle",
]
