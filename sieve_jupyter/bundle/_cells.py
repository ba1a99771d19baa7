"""Reading cells for export: IPython syntax out, `%%sieve_*` cells into decorated Python, and
what each top-level statement binds, needs and does.

A cell's magic lines (``%...``, ``!...``, ``x?``) become ``pass`` so the rest parses with its
own line numbers; a `%%sieve_function` / `%%sieve_model` cell becomes its definition with the
decorator the magic stands for; any other cell magic (``%%time``, ``%%bash``) leaves the cell
out. Free names come from `symtable`, so nested scopes, comprehensions and class bodies are
resolved as Python resolves them.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import re
import shlex
import symtable
from dataclasses import dataclass, field
from typing import Any

from sieve_jupyter._errors import ExportError

__all__ = [
    "STAR",
    "Cell",
    "Known",
    "ParsedCell",
    "Statement",
    "magic_options_parser",
    "parse_cell",
]

SKIP_TAG = "sieve-skip"
EXPORT_TAG = "sieve-export"
#: what a ``from module import *`` binds: names no one can list before it runs (see `_names`)
STAR = "*"
#: names Python provides; a bundle module needs no definition for them
BUILTIN_NAMES = frozenset(dir(builtins)) | {
    "__name__",
    "__file__",
    "__doc__",
    "__spec__",
    "__builtins__",
    "__loader__",
    "__package__",
}
_SIEVE_MAGICS = {"sieve_function": "function", "sieve_model": "model"}
_JOB_METHODS = {"run", "push", "map"}


@dataclass
class Known:
    """What earlier cells told: the names ``sieve_jupyter`` is imported as, and the names bound
    to sieve handles (decorated definitions, ``sieve.function.get(...)``)."""

    aliases: set[str] = field(default_factory=set)
    handles: set[str] = field(default_factory=set)
    #: ``from sieve_jupyter import function, Model``: local name -> "function" or "Model"
    decorators: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One code cell as the exporter sees it.

    Attributes:
        number: the cell's place among the notebook's code cells (1-based), or the input number
            of a kernel's history, as it is shown to the user.
        source: the cell's text, IPython syntax included.
        tags: the cell's metadata tags (``sieve-export``, ``sieve-skip``).
        label: how messages name it, e.g. ``"cell 3"`` or ``"In [5]"``.
    """

    number: int
    source: str
    tags: frozenset[str] = frozenset()
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"cell {self.number}"


@dataclass
class Statement:
    """A top-level statement of a cell."""

    cell: ParsedCell
    first_line: int  # 1-based, decorators included
    last_line: int
    node: ast.stmt
    bound: set[str]
    free: set[str]
    #: why it cannot be part of a module that only defines things, or "" if it can
    action: str = ""
    #: (kind, spec name) when it defines a sieve function or model
    sieve: tuple[str, str] | None = None

    @property
    def position(self) -> tuple[int, int]:
        return (self.cell.order, self.first_line)

    def text(self) -> str:
        return "".join(self.cell.lines[self.first_line - 1 : self.last_line])


@dataclass
class ParsedCell:
    cell: Cell
    order: int
    python: str = ""
    lines: list[str] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    #: why the cell is left out whole ("" if it is not)
    excluded: str = ""
    magics: list[str] = field(default_factory=list)
    #: a `%%sieve_*` cell that was turned into plain Python
    converted: bool = False

    @property
    def pure(self) -> bool:
        """Whether every statement only defines things (the cell can be taken whole)."""
        return not self.excluded and not self.magics and all(not s.action for s in self.statements)


# -- magic options ---------------------------------------------------------------------------


def magic_options_parser() -> argparse.ArgumentParser:
    """The options of `%%sieve_function` / `%%sieve_model`, as the magics declare them."""
    parser = argparse.ArgumentParser(prog="%%sieve_function", add_help=False, exit_on_error=False)
    parser.add_argument("--name", "-n")
    parser.add_argument("--gpu")
    parser.add_argument("--machine-type")
    parser.add_argument("--python-version")
    parser.add_argument("--python-packages", "--pip", nargs="+")
    parser.add_argument("--system-packages", "--apt", nargs="+")
    parser.add_argument("--cuda-version")
    parser.add_argument("--run-command", action="append")
    parser.add_argument("--env", action="append")
    parser.add_argument("--title")
    parser.add_argument("--description")
    parser.add_argument("--code-url")
    parser.add_argument("--image")
    parser.add_argument("--tag", action="append")
    parser.add_argument("--readme")
    parser.add_argument("--restart-on-error", choices=["yes", "no"])
    parser.add_argument("--backend")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--entry")
    parser.add_argument("--fresh-setup", action="store_true")
    return parser


def _words(values: list[str] | None, *, commas: bool = False) -> list[str]:
    out: list[str] = []
    for value in values or []:
        for part in shlex.split(value):
            out.extend(p for p in part.split(",") if p) if commas else out.append(part)
    return out


def _decorator_source(kind: str, args: argparse.Namespace) -> str:
    """The decorator a `%%sieve_*` magic line stands for, as Python source."""
    keywords: list[str] = []

    def add(key: str, value: Any) -> None:
        if value is not None and value != []:
            keywords.append(f"{key}={value!r}")

    add("name", args.name)
    if args.gpu is not None:
        kind_, _, rest = args.gpu.partition(":")
        split = rest.removeprefix("split=")
        add("gpu", {"kind": kind_, "split": int(split)} if split.isdigit() else kind_)
    add("machine_type", args.machine_type)
    add("python_version", args.python_version)
    add("python_packages", _words(args.python_packages))
    add("system_packages", _words(args.system_packages))
    add("cuda_version", args.cuda_version)
    add("run_commands", args.run_command)
    envs = []
    for item in args.env or []:
        name, has_default, default = item.partition("=")
        envs.append(
            f"sieve_jupyter.Env(name={name!r}" + (f", default={default!r})" if has_default else ")")
        )
    if envs:
        keywords.append(f"environment_variables=[{', '.join(envs)}]")
    meta = {
        "title": args.title,
        "description": args.description,
        "code_url": args.code_url,
        "image": args.image,
        "tags": _words(args.tag, commas=True) or None,
        "readme": args.readme,
    }
    meta_args = ", ".join(f"{k}={v!r}" for k, v in meta.items() if v is not None)
    if meta_args:
        keywords.append(f"metadata=sieve_jupyter.Metadata({meta_args})")
    if args.restart_on_error is not None:
        add("restart_on_error", args.restart_on_error == "yes")
    decorator = "Model" if kind == "model" else "function"
    return f"@sieve_jupyter.{decorator}({', '.join(keywords)})"


# -- parsing ---------------------------------------------------------------------------------

_MAGIC_LINE = re.compile(r"^\s*(%|!)|^\s*[\w.]+\?\??\s*$")


def _strip_magics(source: str) -> tuple[str, list[str]]:
    """Replace IPython-only lines with ``pass`` at their indentation; return them too. (Only
    for source that does not parse as Python: see `parse_cell`.)"""
    lines = source.splitlines(keepends=True)
    magics = []
    out = []
    continued = False
    for line in lines:
        if continued or _MAGIC_LINE.match(line):
            magics.append(line.strip())
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}pass\n" if not continued else "\n")
            continued = line.rstrip("\n").endswith("\\")
        else:
            out.append(line)
    return "".join(out), magics


def _convert_sieve_magic(cell: Cell, first: str, body: str) -> str:
    """A `%%sieve_function` / `%%sieve_model` cell as Python with its decorator."""
    magic, _, line = first.strip()[2:].partition(" ")
    kind = _SIEVE_MAGICS[magic]
    try:
        args = magic_options_parser().parse_args(shlex.split(line))
    except (argparse.ArgumentError, ValueError) as exc:
        raise ExportError(
            f"{cell.name}: %%{magic} {line}: {exc}. Fix: correct the option "
            "(see %%sieve_function?)."
        ) from None
    try:
        tree = ast.parse(body)
    except SyntaxError as exc:
        raise ExportError(f"{cell.name}: the %%{magic} cell does not parse: {exc}.") from None
    classes = [
        n
        for n in tree.body
        if isinstance(n, ast.ClassDef)
        and any(
            isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "__predict__"
            for item in n.body
        )
    ]
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    candidates: list[ast.stmt] = list(classes) if kind == "model" else [*functions, *classes]
    if args.entry:
        candidates = [n for n in candidates if getattr(n, "name", None) == args.entry]
    if len(candidates) != 1:
        names = ", ".join(getattr(n, "name", "?") for n in candidates) or "none"
        raise ExportError(
            f"{cell.name}: cannot tell which definition the %%{magic} cell registers "
            f"(candidates: {names}). Fix: give --entry NAME."
        )
    target = candidates[0]
    decorators = getattr(target, "decorator_list", [])
    at = min([target.lineno, *(d.lineno for d in decorators)])
    lines = body.splitlines(keepends=True)
    lines.insert(at - 1, _decorator_source(kind, args) + "\n")
    return "".join(lines)


def parse_cell(cell: Cell, order: int, known: Known) -> ParsedCell:
    """Parse one cell: its statements with what they bind and need, or why it is left out.

    Args:
        cell: the cell.
        order: its place in notebook order (positions compare by it).
        known: what earlier cells told (updated with what this one tells).
    """
    parsed = ParsedCell(cell, order)
    source = cell.source
    stripped = source.lstrip()
    if stripped.startswith("%%"):
        first, _, body = stripped.partition("\n")
        magic = first[2:].split(None, 1)[0] if first[2:].strip() else ""
        if magic not in _SIEVE_MAGICS:
            parsed.excluded = f"runs the cell magic %%{magic}"
            return parsed
        source = _convert_sieve_magic(cell, first, body)
        parsed.converted = True
        known.aliases.add("sieve_jupyter")
    # Source that parses as Python has no magic lines: a magic or shell line is a syntax error
    # there, so a line that starts with `%` or `!` continues an expression ("%d" then % (n,)).
    tree: ast.Module | None
    try:
        tree, python = ast.parse(source), source
    except SyntaxError:
        tree = None
        python, parsed.magics = _strip_magics(source)
    parsed.python = python
    parsed.lines = python.splitlines(keepends=True)
    if parsed.lines and not parsed.lines[-1].endswith("\n"):
        parsed.lines[-1] += "\n"
    if tree is None:
        try:
            tree = ast.parse(python)
        except SyntaxError as exc:
            parsed.excluded = f"does not parse as Python ({exc.msg}, line {exc.lineno})"
            return parsed
    for node in tree.body:
        first_line = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        last_line = node.end_lineno or node.lineno
        text = "".join(parsed.lines[first_line - 1 : last_line])
        bound, free = _names(node, text)
        statement = Statement(parsed, first_line, last_line, node, bound, free)
        _note(node, known)
        statement.sieve = _sieve_definition(node, known)
        if statement.sieve is not None:
            known.handles.add(getattr(node, "name", ""))
        statement.action = _action(node, known)
        parsed.statements.append(statement)
    return parsed


def _note(node: ast.stmt, known: Known) -> None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == "sieve_jupyter":
                known.aliases.add(alias.asname or alias.name)
    elif isinstance(node, ast.ImportFrom) and node.module == "sieve_jupyter":
        for alias in node.names:
            if alias.name in ("function", "Model"):
                known.decorators[alias.asname or alias.name] = alias.name
    elif isinstance(node, ast.Assign) and _is_function_get(node.value, known):
        known.handles.update(t.id for t in node.targets if isinstance(t, ast.Name))


def _names(node: ast.stmt, text: str) -> tuple[set[str], set[str]]:
    """(names the statement binds at the top level, names it needs from elsewhere)."""
    import textwrap

    try:
        table = symtable.symtable(textwrap.dedent(text), "<cell>", "exec")
    except SyntaxError:
        table = symtable.symtable(ast.unparse(node), "<cell>", "exec")
    bound: set[str] = set()
    free: set[str] = set()
    for symbol in table.get_symbols():
        name = symbol.get_name()
        if symbol.is_assigned() or symbol.is_imported():
            bound.add(name)
        if symbol.is_referenced():
            free.add(name)
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        stack.extend(child.get_children())
        for symbol in child.get_symbols():
            if symbol.is_global() and symbol.is_referenced():
                free.add(symbol.get_name())
    # A def or class may refer to itself (recursion); `x = x + 1` needs an earlier x.
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        free.discard(node.name)
    if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
        bound.add(STAR)  # (a name defined nowhere else may come from it: see `capture`)
    return bound, free


def _is_sieve_decorator(node: ast.expr, known: Known) -> str | None:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Name) and target.id in known.decorators:
        return "model" if known.decorators[target.id] == "Model" else "function"
    aliases = known.aliases
    if (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id in aliases
        and target.attr in ("function", "Model")
    ):
        return "model" if target.attr == "Model" else "function"
    return None


def _sieve_definition(node: ast.stmt, known: Known) -> tuple[str, str] | None:
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return None
    for decorator in node.decorator_list:
        kind = _is_sieve_decorator(decorator, known)
        if kind is None:
            continue
        if isinstance(node, ast.ClassDef):
            kind = "model"
        name = node.name
        if isinstance(decorator, ast.Call):
            for keyword in decorator.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    name = str(keyword.value.value)
        return kind, name
    return None


def _runs_jobs(node: ast.AST, known: Known) -> bool:
    """Whether `node` calls ``.run/.push/.map`` on a sieve handle (a decorated name, or
    ``sieve.function.get(...)``)."""
    for sub in ast.walk(node):
        if not (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr in _JOB_METHODS
        ):
            continue
        base = sub.func.value
        if isinstance(base, ast.Name) and base.id in known.handles:
            return True
        if _is_function_get(base, known):
            return True
    return False


def _is_function_get(node: ast.expr, known: Known) -> bool:
    """``sieve.function.get(...)`` (with any alias of the package)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "function"
        and isinstance(node.func.value.value, ast.Name)
        and node.func.value.value.id in known.aliases
    )


def _action(node: ast.stmt, known: Known) -> str:
    """Why `node` does more than define names ("" when it only defines)."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)):
        return ""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return ""
    if isinstance(node, ast.Expr):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return ""  # a docstring
        if _runs_jobs(node, known):
            return "runs jobs"
        return "displays or computes something"
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        return "runs jobs" if _runs_jobs(node, known) else ""
    if isinstance(node, (ast.If, ast.Try, ast.With)):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt) and _action(child, known):
                return _action(child, known)
            if isinstance(child, ast.ExceptHandler):
                for inner in child.body:
                    if _action(inner, known):
                        return _action(inner, known)
        return ""
    return f"is a {type(node).__name__.lower()} statement"
