"""The generated entry module of a model.yaml export: a ``load`` and a ``predict`` function per
exported function or model, around the captured module.

``load_<entry>()`` builds the model (an instance whose ``__setup__`` ran) or returns the
function; ``predict_<entry>(model, ...)`` calls it with the original parameters, written with
their own hints, defaults and docstring, so the loader (which reads them with `ast`, never
importing the code) gives the loaded model the same signature, form and schema. Parameters a
model.yaml cannot bind by name (``*args``, ``**kwargs``, positional-only ones) are refused here,
with the parameter and the fix.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sieve_jupyter._errors import ExportError
from sieve_jupyter.bundle._bundle import MODULE, BundleFunction

__all__ = ["ENTRY_MODULE", "ExportedEntry", "entry_module", "read_entry"]

#: the generated module, beside the captured one in ``src/``
ENTRY_MODULE = "sieve_entrypoints"
#: what load's output is called (``${model.runtime.load.output.model}``), and the first
#: parameter of predict that receives it, as Efemarai's own examples name it
LOADED = "model"


@dataclass(frozen=True)
class Parameter:
    """One parameter of the generated predict, as source text."""

    name: str
    keyword_only: bool
    annotation: str | None
    default: str | None


@dataclass(frozen=True)
class ExportedEntry:
    """One exported function or model, as the entry module and model.yaml write it."""

    function: BundleFunction
    parameters: tuple[Parameter, ...]
    returns: str | None
    #: the predict parameter that receives load's output (``model`` unless that is taken)
    loaded: str
    #: names the hints use (the entry module imports them as the captured module does)
    names: frozenset[str]

    @property
    def load(self) -> str:
        return f"load_{self.function.entry}"

    @property
    def predict(self) -> str:
        return f"predict_{self.function.entry}"


def _definition(tree: ast.Module, name: str) -> ast.stmt | None:
    """The last top-level def or class binding `name` (a re-defined cell's last version)."""
    found: ast.stmt | None = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
            node.name == name
        ):
            found = node
    return found


def _predict_of(
    tree: ast.Module, cls: ast.ClassDef, seen: frozenset[str] = frozenset()
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The class's ``__predict__``, or a base class's among the module's own classes."""
    found = None
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
            node.name == "__predict__"
        ):
            found = node
    if found is not None:
        return found
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id not in seen:
            parent = _definition(tree, base.id)
            if isinstance(parent, ast.ClassDef):
                inherited = _predict_of(tree, parent, seen | {cls.name})
                if inherited is not None:
                    return inherited
    return None


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _names(node: ast.expr) -> set[str]:
    """Top-level names an expression uses (inside string annotations too)."""
    found: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            try:
                found |= _names(ast.parse(child.value, mode="eval").body)
            except SyntaxError:
                pass  # a Literal["..."] value, not a forward reference
    return found


def read_entry(tree: ast.Module, function: BundleFunction, where: str) -> ExportedEntry:
    """Read what the generated predict must look like for `function`, from the captured
    module's source (`tree`).

    Raises:
        ExportError: the function streams, is async, or has a parameter a model.yaml cannot
            bind by name; the message names it, where it is defined, and the fix.
    """
    spec = function.spec
    node = _definition(tree, function.entry)
    target: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    if isinstance(node, ast.ClassDef):
        label = f"{function.entry}.__predict__"
        target = _predict_of(tree, node)
    else:
        label = function.entry
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            target = node
    if target is None:
        raise ExportError(
            f"{where}: cannot find {label} at the top level of the captured code, so its "
            "parameters cannot be written into model.yaml. Fix: define it in the class (or "
            "function) itself, at the top level of its cell."
        )
    if isinstance(target, ast.AsyncFunctionDef):
        raise ExportError(
            f"{where}: {label} is async; a model.yaml's predict entrypoint is called directly. "
            "Fix: make it a plain def (call asyncio.run inside it if it must await), or export "
            "a bundle (format='bundle')."
        )
    if spec.is_generator:
        raise ExportError(
            f"{where}: {label} yields its results (it streams); a model.yaml model returns one "
            "result per call. Fix: return a list of the items instead, or export a bundle "
            "(format='bundle'), which streams."
        )
    args = target.args
    if args.vararg is not None:
        name = args.vararg.arg
        raise ExportError(
            f"{where}: {label} takes *{name}, any number of positional arguments, but a "
            "model.yaml binds each argument by name (${inputs.NAME}). Fix: take them as one "
            f"list parameter instead, e.g. `{name}: list[...]`, or export a bundle."
        )
    if args.kwarg is not None:
        name = args.kwarg.arg
        raise ExportError(
            f"{where}: {label} takes **{name}, any keyword arguments, but a model.yaml model "
            "takes exactly the arguments it lists (one ${inputs.NAME} each). Fix: name each "
            "argument as a parameter, or export a bundle."
        )
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    first = 1 if isinstance(node, ast.ClassDef) else 0  # `self`
    posonly = {a.arg for a in args.posonlyargs[first:]}
    if posonly:
        name = next(a.arg for a in args.posonlyargs[first:])
        raise ExportError(
            f"{where}: {label}: parameter {name!r} is positional-only (it comes before `/`), "
            f"but a model.yaml passes every argument by name (${{inputs.{name}}}). Fix: "
            f"remove the `/` from {label}'s parameters."
        )
    pairs: list[tuple[ast.arg, ast.expr | None, bool]] = [
        (arg, default, False) for arg, default in zip(positional, defaults, strict=True)
    ][first:]
    pairs += [
        (arg, default, True) for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    schema = spec.inputs.get("properties", {})
    parameters: list[Parameter] = []
    names: set[str] = set()
    for arg, default, keyword_only in pairs:
        if arg.arg.startswith("_"):
            raise ExportError(
                f"{where}: {label}: parameter {arg.arg!r} starts with '_', which a model.yaml "
                f"call argument (${{inputs.{arg.arg}}}) cannot. Fix: rename it without the "
                "leading underscore."
            )
        annotation = None
        if arg.annotation is not None:
            annotation = ast.unparse(arg.annotation)
            names |= _names(arg.annotation)
        parameters.append(
            Parameter(
                arg.arg,
                keyword_only,
                annotation,
                _default_text(default, schema.get(arg.arg, {}), arg.arg, label, where),
            )
        )
    returns = None
    if target.returns is not None:
        returns = ast.unparse(target.returns)
        names |= _names(target.returns)
    taken = {p.name for p in parameters}
    loaded = LOADED
    while loaded in taken:
        loaded += "_"
    return ExportedEntry(function, tuple(parameters), returns, loaded, frozenset(names))


def _default_text(
    node: ast.expr | None, prop: dict[str, Any], name: str, label: str, where: str
) -> str | None:
    """A default as a literal the loader can read: the source when it is one, else the value
    the original's schema shows (a constant's value), else refused."""
    if node is None:
        return None
    if _literal(node):
        return ast.unparse(node)
    if "default" in prop:
        return repr(prop["default"])
    raise ExportError(
        f"{where}: {label}: the default of {name!r} (`{ast.unparse(node)}`) is not a literal, "
        "and a model.yaml form can show only literal defaults. Fix: give it a literal default "
        "(a number, string, bool, None, or a list or dict of them), e.g. None, and compute "
        "the value inside."
    )


# --- writing ------------------------------------------------------------------------------------


def _bindings(body: list[ast.stmt], nested: bool = False) -> dict[str, str | None]:
    """Names a module binds at its top level (inside top-level if/try/with/for blocks too):
    name -> the import line that binds it (a plain top-level import), else None."""
    found: dict[str, str | None] = {}
    for statement in body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            found.update(_imported(statement, nested))
        elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[statement.name] = None
        else:
            found.update(dict.fromkeys(_assigned(statement)))
        for block in _blocks(statement):
            found.update(_bindings(block, nested=True))
    return found


def _imported(statement: ast.Import | ast.ImportFrom, nested: bool) -> dict[str, str | None]:
    """The names an import binds -> its line, for a plain top-level import (else None)."""
    found: dict[str, str | None] = {}
    for alias in statement.names:
        suffix = f" as {alias.asname}" if alias.asname else ""
        if isinstance(statement, ast.Import):
            text: str | None = f"import {alias.name}{suffix}"
            name = alias.asname or alias.name.split(".")[0]
        elif alias.name == "*":
            continue
        else:
            plain = statement.level == 0 and statement.module
            text = f"from {statement.module} import {alias.name}{suffix}" if plain else None
            name = alias.asname or alias.name
        found[name] = None if nested else text
    return found


def _assigned(statement: ast.stmt) -> list[str]:
    """The names an assignment, a `for` or a `with` binds."""
    targets: list[ast.AST] = []
    if isinstance(statement, ast.Assign):
        targets = list(statement.targets)
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        targets = [statement.target]
    elif isinstance(statement, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in statement.items if item.optional_vars]
    return [
        node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)
    ]


def _blocks(statement: ast.stmt) -> list[list[ast.stmt]]:
    """The statement blocks a compound statement runs at the level it is on."""
    if isinstance(statement, ast.Try):
        handlers = [handler.body for handler in statement.handlers]
        return [statement.body, *handlers, statement.orelse, statement.finalbody]
    if isinstance(statement, (ast.If, ast.With, ast.AsyncWith, ast.For, ast.AsyncFor, ast.While)):
        return [getattr(statement, block, []) for block in ("body", "orelse")]
    return []


def _imports(tree: ast.Module, names: set[str]) -> list[str]:
    """Import lines that bind `names` as the captured module does: its own top-level imports
    (so the loader, which reads typing, pathlib and sieve's names from them, sees the hints
    as the original had them), else ``from main import NAME``."""
    bound = _bindings(tree.body)
    lines: list[str] = []
    local: list[str] = []
    for name in sorted(names):
        if name not in bound:
            continue  # a builtin, or a name no annotation needs to exist: annotations are not
            # evaluated (the module says `from __future__ import annotations`)
        text = bound[name]
        if text is not None:
            lines.append(text)
        else:
            local.append(name)
    # in the captured module's order, each import once
    order = {text: index for index, text in enumerate(_import_order(tree))}
    lines = sorted(dict.fromkeys(lines), key=lambda t: order.get(t, len(order)))
    if local:
        lines.append(f"from {MODULE} import {', '.join(sorted(local))}")
    return lines


def _import_order(tree: ast.Module) -> list[str]:
    return [text for text in _bindings(tree.body).values() if text is not None]


def _docstring(text: str, indent: str) -> list[str]:
    if not text:
        return []
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = body.split("\n")
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line}" if line else "" for line in lines[1:]]
    if len(lines) > 1:
        out.append(f'{indent}"""')
    else:
        out[0] += '"""'
    return out


def _signature(entry: ExportedEntry) -> list[str]:
    """``def predict_x(model, a: int, b: int = 2) -> int:``, one parameter a line if long."""
    parts = [entry.loaded]
    star = False
    for p in entry.parameters:
        if p.keyword_only and not star:
            parts.append("*")
            star = True
        text = p.name + (f": {p.annotation}" if p.annotation else "")
        if p.default is not None:
            text += f" = {p.default}" if p.annotation else f"={p.default}"
        parts.append(text)
    returns = f" -> {entry.returns}" if entry.returns else ""
    one_line = f"def {entry.predict}({', '.join(parts)}){returns}:"
    if len(one_line) <= 100:
        return [one_line]
    return [f"def {entry.predict}(", *(f"    {p}," for p in parts), f"){returns}:"]


def entry_module(entries: Sequence[ExportedEntry], tree: ast.Module, origin: str) -> str:
    """The source of the generated entry module."""
    names: set[str] = set()
    for entry in entries:
        names |= entry.names
    imports = _imports(tree, names)
    lines = [
        f'"""Generated by sieve-jupyter (exported from {origin}): the load and predict',
        f"entrypoints model.yaml names, around the code captured in {MODULE}.py. Export again",
        'rather than edit it."""',
        "",
        "from __future__ import annotations",
        "",
        *imports,
        *([""] if imports else []),
        "from sieve_jupyter.runtime import load_exported",
    ]
    for entry in entries:
        spec = entry.function.spec
        call = f"{entry.loaded}.__predict__" if spec.kind == "model" else entry.loaded
        arguments = ", ".join(f"{p.name}={p.name}" for p in entry.parameters)
        envs = ", ".join(e.name for e in spec.env)
        load_doc = (
            f"Build {entry.function.entry} ({MODULE}.py) and run its __setup__, once per worker."
            if spec.kind == "model"
            else f"Import {entry.function.entry} ({MODULE}.py), once per worker."
        )
        if envs:
            load_doc += (
                f"\n\n`environment` has the values of {envs} (its sieve.Env), which "
                "the worker also\nhas in os.environ; model.yaml names them here so "
                "a loader passes them on."
            )
        lines += [
            "",
            "",
            f"def {entry.load}(**environment: str) -> object:",
            *_docstring(load_doc, "    "),
            f"    return load_exported({MODULE!r}, {entry.function.entry!r}, {spec.kind!r})",
            "",
            "",
            *_signature(entry),
            *_docstring(spec.doc, "    "),
            f"    return {call}({arguments})",
        ]
    return "\n".join(lines) + "\n"
