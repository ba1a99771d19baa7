"""What an entrypoint's code says about itself, read without importing it.

The kernel never imports a model's code (it may need packages only its worker has, and it may
run anything at import). The module is parsed with `ast` instead: whether it defines the
function, its parameters, their defaults and docstring, and its type hints — resolved only
against a fixed set of safe names (builtins, `typing`, `collections.abc`, `pathlib`, sieve's
file types), never evaluated. A hint that cannot be resolved that way is left out.
"""

from __future__ import annotations

import ast
import collections
import collections.abc
import difflib
import importlib.util
import pathlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EntrypointCode", "Parameter", "read_entrypoint"]


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


#: a default or annotation that is absent or could not be read
UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class Parameter:
    name: str
    #: an `inspect.Parameter` kind name: POSITIONAL_ONLY, POSITIONAL_OR_KEYWORD, VAR_POSITIONAL,
    #: KEYWORD_ONLY, VAR_KEYWORD
    kind: str
    has_default: bool = False
    #: the default when it is a literal, else UNKNOWN
    default: Any = UNKNOWN
    annotation: Any = UNKNOWN


@dataclass
class EntrypointCode:
    """What was learned about one entrypoint.

    Attributes:
        file: the module's file (None for a module outside the code root).
        parameters: the function's parameters, or None when its signature cannot be read
            statically (defined by assignment, imported, a class, or an installed module).
        doc: its docstring.
        returns: its return annotation, or UNKNOWN.
    """

    file: Path | None
    parameters: list[Parameter] | None = None
    doc: str = ""
    returns: Any = UNKNOWN
    notes: list[str] = field(default_factory=list)

    def parameter(self, name: str) -> Parameter | None:
        for parameter in self.parameters or ():
            if parameter.name == name:
                return parameter
        return None

    @property
    def takes_any_keyword(self) -> bool:
        return any(p.kind == "VAR_KEYWORD" for p in self.parameters or ())


class EntrypointNotFound(LookupError):
    """The entrypoint's module or function is not there; args: (problem, fix)."""


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def read_entrypoint(root: Path, entrypoint: str) -> EntrypointCode:
    """Read ``module[.sub]:function`` under `root`.

    Raises:
        EntrypointNotFound: no such module under `root` nor installed, the module does not
            parse, or it binds no such name.
    """
    module, _, function = entrypoint.partition(":")
    path = _module_file(root, module)
    if path is None:
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is not None:  # an installed package (not imported)
            return EntrypointCode(None, notes=[f"{module} is not in the code; it is installed"])
        expected = "/".join(module.split("."))
        raise EntrypointNotFound(
            f"module {module!r} is not in the code at {root} (no {expected}.py or "
            f"{expected}/__init__.py).",
            "point the entrypoint at a module of the repository (its path with dots, from the "
            "repository's root), or fix the repository.",
        )
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise EntrypointNotFound(
            f"{path} does not parse (line {exc.lineno}: {exc.msg}).", "fix the syntax error."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EntrypointNotFound(f"cannot read {path} ({exc}).", "check the file.") from None
    definitions = _top_level(tree.body)
    node = definitions.get(function)
    if node is None and not definitions.get("*"):
        functions = sorted(n for n, d in definitions.items() if isinstance(d, ast.FunctionDef))
        close = difflib.get_close_matches(function, functions, n=1)
        hint = f"did you mean {module}:{close[0]}? " if close else ""
        raise EntrypointNotFound(
            f"{path.name} defines no {function!r} (its functions: "
            f"{', '.join(functions) or 'none'}).",
            f"{hint}name a function defined at the top level of {path.name}.",
        )
    if isinstance(node, ast.AsyncFunctionDef):
        raise EntrypointNotFound(
            f"{module}:{function} is an async function; entrypoints are called directly.",
            "make it a plain def (call asyncio.run inside it if it needs to await).",
        )
    if not isinstance(node, ast.FunctionDef):
        return EntrypointCode(path)
    names = _import_names(tree.body)
    return EntrypointCode(
        path,
        parameters=_parameters(node.args, names),
        doc=ast.get_docstring(node) or "",
        returns=_annotation(node.returns, names),
    )


def _top_level(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names bound at a module's top level (including inside top-level if/try/with blocks);
    ``"*"`` is set when a star import could bind anything."""
    found: dict[str, ast.AST] = {}
    for statement in body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[statement.name] = statement
        elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        found.setdefault(name.id, statement)
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            for alias in statement.names:
                if alias.name == "*":
                    found["*"] = statement
                else:
                    found.setdefault(alias.asname or alias.name.split(".")[0], statement)
        elif isinstance(statement, (ast.If, ast.Try, ast.With)):
            blocks = [statement.body, getattr(statement, "orelse", [])]
            if isinstance(statement, ast.Try):
                blocks += [h.body for h in statement.handlers] + [statement.finalbody]
            for block in blocks:
                for bound, node in _top_level(block).items():
                    found.setdefault(bound, node)
    return found


# --- hints -------------------------------------------------------------------------------------


def _sieve_namespace() -> dict[str, Any]:
    from sieve_jupyter.runtime import Audio, File, Image, Video

    return {"File": File, "Image": Image, "Video": Video, "Audio": Audio}


#: modules whose names a hint may use, as the module's own imports bind them
_SAFE_MODULES: dict[str, Any] = {
    "typing": typing,
    "typing_extensions": typing,
    "collections.abc": collections.abc,
    "collections": collections,
    "pathlib": pathlib,
}
_BUILTINS: dict[str, Any] = {
    t.__name__: t
    for t in (
        int,
        float,
        str,
        bool,
        bytes,
        complex,
        list,
        dict,
        tuple,
        set,
        frozenset,
        object,
        type,
    )
}
_BUILTINS["None"] = None


def _import_names(body: list[ast.stmt]) -> dict[str, Any]:
    """Names the module's own top-level imports bind to safe objects."""
    sieve = _sieve_namespace()
    names: dict[str, Any] = dict(_BUILTINS)
    for statement in body:
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.name in ("sieve", "sieve_jupyter"):
                    names[alias.asname or alias.name] = sieve
                elif alias.name in _SAFE_MODULES:
                    if alias.asname:
                        names[alias.asname] = _SAFE_MODULES[alias.name]
                    else:  # `import collections.abc` binds `collections`
                        top = alias.name.split(".")[0]
                        if top in _SAFE_MODULES:
                            names[top] = _SAFE_MODULES[top]
        elif isinstance(statement, ast.ImportFrom) and statement.level == 0:
            source = statement.module or ""
            for alias in statement.names:
                if source in ("sieve", "sieve_jupyter") and alias.name in sieve:
                    names[alias.asname or alias.name] = sieve[alias.name]
                elif source in _SAFE_MODULES and alias.name != "*":
                    value = getattr(_SAFE_MODULES[source], alias.name, UNKNOWN)
                    if value is not UNKNOWN:
                        names[alias.asname or alias.name] = value
    return names


def _resolve(node: ast.expr, names: dict[str, Any]) -> Any:
    """The object a hint expression names, built from `names` only; raises on anything else."""
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise LookupError(node.id)
        return names[node.id]
    if isinstance(node, ast.Attribute):
        return _resolve_attribute(node, names)
    if isinstance(node, ast.Constant):
        if node.value is None:
            return None
        if isinstance(node.value, str):  # a string annotation: resolve what it says
            return _resolve(ast.parse(node.value, mode="eval").body, names)
        raise LookupError(repr(node.value))
    if isinstance(node, ast.Subscript):
        return _resolve_subscript(node, names)
    if isinstance(node, ast.List):  # Callable[[int, str], R]
        return [_resolve(e, names) for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_resolve(node.left, names), _resolve(node.right, names)]  # noqa: UP007
    raise LookupError(type(node).__name__)


def _resolve_attribute(node: ast.Attribute, names: dict[str, Any]) -> Any:
    """``sieve.File``, ``typing.Optional``: an attribute of a namespace or of a safe module."""
    owner = _resolve(node.value, names)
    if isinstance(owner, dict):
        if node.attr not in owner:
            raise LookupError(node.attr)
        return owner[node.attr]
    if owner not in _SAFE_MODULES.values():
        raise LookupError(node.attr)
    return getattr(owner, node.attr)


def _resolve_subscript(node: ast.Subscript, names: dict[str, Any]) -> Any:
    """``list[int]``, ``Literal["a", "b"]``, ``Annotated[T, ...]`` (the type only)."""
    origin = _resolve(node.value, names)
    if origin is typing.Literal:
        values = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return typing.Literal[tuple(ast.literal_eval(v) for v in values)]
    if origin is typing.Annotated and isinstance(node.slice, ast.Tuple):
        return _resolve(node.slice.elts[0], names)  # the type; its metadata is code
    if isinstance(node.slice, ast.Tuple):
        arguments: Any = tuple(_resolve(e, names) for e in node.slice.elts)
    else:
        arguments = _resolve(node.slice, names)
    return origin[arguments]


def _annotation(node: ast.expr | None, names: dict[str, Any]) -> Any:
    if node is None:
        return UNKNOWN
    try:
        value = _resolve(node, names)
    except Exception:  # noqa: BLE001 - a hint we may not resolve is simply not used
        return UNKNOWN
    return type(None) if value is None else value


def _default(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return UNKNOWN


def _parameters(args: ast.arguments, names: dict[str, Any]) -> list[Parameter]:
    parameters: list[Parameter] = []
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = "POSITIONAL_ONLY" if index < len(args.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        parameters.append(_parameter(arg, kind, default, names))
    if args.vararg is not None:
        parameters.append(_parameter(args.vararg, "VAR_POSITIONAL", None, names))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        parameters.append(_parameter(arg, "KEYWORD_ONLY", default, names))
    if args.kwarg is not None:
        parameters.append(_parameter(args.kwarg, "VAR_KEYWORD", None, names))
    return parameters


def _parameter(
    arg: ast.arg, kind: str, default: ast.expr | None, names: dict[str, Any]
) -> Parameter:
    return Parameter(
        arg.arg,
        kind,
        has_default=default is not None,
        default=_default(default) if default is not None else UNKNOWN,
        annotation=_annotation(arg.annotation, names),
    )
