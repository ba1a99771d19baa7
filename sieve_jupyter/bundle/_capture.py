"""Source capture: from a notebook's cells, the module that defines the chosen functions and
models and everything they need, and a report of what was taken and why.

Selection is by free-name analysis in notebook order: starting from the chosen definitions,
each name a taken statement needs is looked up among the statements that bind it (the last one
before the statement that needs it, else the first after). A cell that only defines things is
taken whole, comments and all; from a cell that also runs jobs, displays things or uses magics,
only the statements needed are taken. ``sieve-export`` takes a cell whole, ``sieve-skip``
never takes it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from sieve_jupyter._errors import ExportError
from sieve_jupyter.bundle._cells import (
    BUILTIN_NAMES,
    EXPORT_TAG,
    SKIP_TAG,
    STAR,
    Cell,
    Known,
    ParsedCell,
    Statement,
    parse_cell,
)

__all__ = ["Capture", "Target", "capture"]


@dataclass(frozen=True)
class Target:
    """A sieve function or model found in the cells."""

    entry: str  # the module-level name
    name: str  # the function's name (spec name)
    kind: str
    cell: str  # where it is defined


@dataclass
class Capture:
    """What `capture` took: the module's source, the chosen targets, and the report."""

    source: str
    targets: list[Target]
    #: one line per cell: what was taken from it, or why it was left out
    report: list[str] = field(default_factory=list)

    def report_text(self) -> str:
        return "\n".join(self.report)


def capture(
    cells: Sequence[Cell], names: Sequence[str] | None = None, *, origin: str = "the notebook"
) -> Capture:
    """Capture the module for the sieve functions and models named `names` (all when None).

    Args:
        cells: the code cells in notebook order.
        names: functions or models to export, by function name or by Python name.
        origin: how the header of the module names where its code came from.

    Raises:
        ExportError: a name is unknown, a needed name is defined nowhere (or only in a
            ``sieve-skip`` cell or a cell that cannot be read), naming the cell and the name.
    """
    known = Known()
    parsed = [parse_cell(cell, order, known) for order, cell in enumerate(cells)]
    statements = [s for p in parsed if not p.excluded for s in p.statements]
    definitions = [s for s in statements if s.sieve is not None]
    targets = _choose(definitions, names, parsed)

    closure = _Closure(parsed, statements)
    closure.take_tagged_cells()
    for statement in targets:
        assert statement.sieve is not None
        closure.take(statement, f"defines {statement.sieve[0]} {statement.sieve[1]!r}")
    closure.complete()

    ordered = sorted(closure.taken.values(), key=lambda s: s.position)
    module, report = _assemble(parsed, ordered, closure.whole, closure.needed_by, origin)
    # Sieve functions the chosen ones call (`tokenize.run(...)`) are served too: a worker
    # reaches them through the server's manager.
    served = [*targets, *(s for s in ordered if s.sieve is not None and s not in targets)]
    latest = {s.sieve[1]: s for s in served if s.sieve is not None}
    chosen = [
        Target(entry=s.node.name, name=s.sieve[1], kind=s.sieve[0], cell=s.cell.cell.name)
        for s in served
        if s.sieve is not None and isinstance(s.node, _DEFS) and latest[s.sieve[1]] is s
    ]
    return Capture(source=module, targets=chosen, report=report)


class _Closure:
    """The statements the module needs: those taken, and transitively the statements that
    bind the names they use (a worklist)."""

    def __init__(self, parsed: list[ParsedCell], statements: list[Statement]) -> None:
        self.parsed = parsed
        #: for each name, the statements that bind it, in notebook order
        self.bindings: dict[str, list[Statement]] = {}
        for statement in statements:
            for name in statement.bound:
                self.bindings.setdefault(name, []).append(statement)
        self.taken: dict[int, Statement] = {}
        #: why each statement was taken (the first reason)
        self.needed_by: dict[int, str] = {}
        self.whole: set[int] = set()  # orders of cells taken whole
        self._queue: list[Statement] = []

    def take(self, statement: Statement, reason: str) -> None:
        """Take `statement`, and the rest of its cell when the cell only defines things."""
        if id(statement) in self.taken:
            return
        self.taken[id(statement)] = statement
        self.needed_by.setdefault(id(statement), reason)
        self._queue.append(statement)
        cell = statement.cell
        if cell.pure and cell.order not in self.whole and SKIP_TAG not in cell.cell.tags:
            self.whole.add(cell.order)
            for other in cell.statements:
                if other is not statement:
                    self.take(other, f"in the same cell as {_label(statement)}")

    def take_tagged_cells(self) -> None:
        """Take every cell tagged ``sieve-export`` whole."""
        for cell in self.parsed:
            if EXPORT_TAG not in cell.cell.tags:
                continue
            if cell.excluded or cell.magics:
                what = cell.excluded or f"uses {cell.magics[0]!r}"
                raise ExportError(
                    f"{cell.cell.name} is tagged {EXPORT_TAG} but {what}, which plain Python "
                    "cannot run. Fix: remove the magic from the cell, or the tag."
                )
            self.whole.add(cell.order)
            for statement in cell.statements:
                self.take(statement, f"tagged {EXPORT_TAG}")

    def complete(self) -> None:
        """Take what the taken statements need, until nothing more is needed."""
        while self._queue:
            statement = self._queue.pop()
            for name in sorted(statement.free):
                if name == "sieve_jupyter" and statement.cell.converted:
                    continue  # the module's header imports it for the decorators of magic cells
                self._take_source_of(name, statement)

    def _take_source_of(self, name: str, statement: Statement) -> None:
        """Take the statement that binds `name` for `statement`; raises `ExportError` when
        none can be taken."""
        source = _resolve(name, statement, self.bindings)
        if source is None:
            if name in BUILTIN_NAMES or name in statement.bound:
                return
            stars = _star_imports(statement, self.bindings)
            if not stars:
                raise ExportError(_undefined(name, statement, self.parsed))
            for star in stars:
                self.take(star, f"{name!r} (from its *), needed by {_label(statement)}")
            return
        if SKIP_TAG in source.cell.cell.tags:
            raise ExportError(
                f"{statement.cell.cell.name}: {_label(statement)} needs {name!r}, which is "
                f"defined only in {source.cell.cell.name}, tagged {SKIP_TAG}. Fix: remove "
                f"the tag, or define {name!r} in a cell that is exported."
            )
        if source.action:
            raise ExportError(
                f"{statement.cell.cell.name}: {_label(statement)} needs {name!r}, which "
                f"{source.cell.cell.name} computes with a statement that {source.action}. "
                f"Fix: compute {name!r} inside the function (or in __setup__), or tag "
                f"{source.cell.cell.name} {EXPORT_TAG} if running it at import is intended."
            )
        self.take(source, f"{name!r}, needed by {_label(statement)}")


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
#: code written for Sieve's own SDK, whose decorators are not this package's
_SIEVE_SDK_IMPORT = re.compile(r"^\s*(import sieve\s*($|#)|from sieve import )", re.M)


def _label(statement: Statement) -> str:
    name = getattr(statement.node, "name", None)
    if isinstance(name, str):
        return name
    return f"line {statement.first_line}"


def _choose(
    definitions: list[Statement], names: Sequence[str] | None, parsed: list[ParsedCell]
) -> list[Statement]:
    # The last definition of each name wins (a re-defined model, a re-run cell).
    latest: dict[str, Statement] = {}
    for statement in definitions:
        assert statement.sieve is not None
        latest[statement.sieve[1]] = statement
    if names is None:
        if not latest:
            skipped = [p.cell.name for p in parsed if p.excluded]
            hint = f" (left out: {', '.join(skipped)})" if skipped else ""
            if any(_SIEVE_SDK_IMPORT.search(p.cell.source) for p in parsed):
                raise ExportError(
                    f"no sieve function or model is defined in these cells{hint}: they import "
                    "Sieve's own SDK (`import sieve`). Fix: change that line to "
                    "`import sieve_jupyter as sieve`."
                )
            raise ExportError(
                f"no sieve function or model is defined in these cells{hint}. Fix: decorate a "
                "function with @sieve.function(...) or a class with @sieve.Model(...)."
            )
        return list(latest.values())
    chosen: list[Statement] = []
    for name in names:
        match = latest.get(name) or next(
            (s for s in reversed(definitions) if getattr(s.node, "name", None) == name), None
        )
        if match is None:
            known = ", ".join(sorted(latest)) or "none"
            raise ExportError(
                f"{name!r} is not a sieve function or model defined in these cells (found: "
                f"{known}). Fix: use one of those names."
            )
        if match not in chosen:
            chosen.append(match)
    return chosen


def _resolve(
    name: str, statement: Statement, bindings: dict[str, list[Statement]]
) -> Statement | None:
    candidates = [s for s in bindings.get(name, ()) if s is not statement]
    if not candidates:
        return None
    before = [s for s in candidates if s.position < statement.position]
    return before[-1] if before else candidates[0]


def _star_imports(statement: Statement, bindings: dict[str, list[Statement]]) -> list[Statement]:
    """The ``from module import *`` statements that may define a name `statement` uses and no
    statement binds by name: those before it (else all of them), since which module's * holds
    the name is known only once they run."""
    stars = [s for s in bindings.get(STAR, ()) if s is not statement]
    before = [s for s in stars if s.position < statement.position]
    return before or stars


def _undefined(name: str, statement: Statement, parsed: list[ParsedCell]) -> str:
    where = f"{statement.cell.cell.name}: {_label(statement)} uses {name!r}"
    for cell in parsed:
        if cell.excluded and name in cell.python:
            return (
                f"{where}, which only {cell.cell.name} might define, and that cell "
                f"{cell.excluded}. Fix: define {name!r} in a plain Python cell."
            )
    if name in ("display", "get_ipython", "In", "Out"):
        return (
            f"{where}, which only exists inside IPython; the bundle runs with plain "
            f"Python. Fix: do not use {name!r} in exported code."
        )
    return f"{where}, which no cell defines. Fix: define {name!r} (or import it) in a cell."


def _assemble(
    parsed: list[ParsedCell],
    ordered: list[Statement],
    whole: set[int],
    needed_by: dict[int, str],
    origin: str,
) -> tuple[str, list[str]]:
    by_cell: dict[int, list[Statement]] = {}
    for statement in ordered:
        by_cell.setdefault(statement.cell.order, []).append(statement)
    header = [
        f'"""Captured by sieve-jupyter from {origin}: the cells its exported functions and',
        'models need, in notebook order (the comments name each cell)."""',
        "",
    ]
    if any(p.converted for p in parsed if p.order in by_cell):
        header.append("import sieve_jupyter  # the decorators of %%sieve_* cells")
        header.append("")
    parts = ["\n".join(header)]
    report: list[str] = []
    for cell in parsed:
        name = cell.cell.name
        chosen = by_cell.get(cell.order)
        if cell.excluded:
            report.append(f"{name}: left out: it {cell.excluded}")
            continue
        if not chosen:
            doing = sorted({s.action for s in cell.statements if s.action})
            if cell.magics:
                doing.append(f"uses {cell.magics[0]!r}")
            why = "; ".join(doing) if doing else "nothing exported needs it"
            if SKIP_TAG in cell.cell.tags:
                why = f"tagged {SKIP_TAG}"
            report.append(f"{name}: left out: {why}")
            continue
        converted = " (the %%sieve magic as a decorator)" if cell.converted else ""
        if cell.order in whole:
            text = cell.python
            reasons = sorted(
                {
                    needed_by[id(s)]
                    for s in chosen
                    if not needed_by[id(s)].startswith("in the same cell")
                }
            )
            report.append(f"{name}: taken whole{converted}: {'; '.join(reasons)}")
            parts.append(f"# --- {name} ---\n{text.rstrip()}\n")
            continue
        texts = [s.text().rstrip() for s in chosen]
        lines = ", ".join(
            f"line {s.first_line}"
            if s.first_line == s.last_line
            else f"lines {s.first_line}-{s.last_line}"
            for s in chosen
        )
        reasons = sorted({needed_by[id(s)] for s in chosen})
        rest = sorted({s.action for s in cell.statements if s.action and s not in chosen})
        if cell.magics:
            rest.append(f"uses {cell.magics[0]!r}")
        left = f"; left out the rest ({'; '.join(rest)})" if rest else ""
        report.append(f"{name}: took {lines}{converted}: {'; '.join(reasons)}{left}")
        parts.append(f"# --- {name}, {lines} ---\n" + "\n".join(texts) + "\n")
    return "\n".join(parts), report
