"""Imports point down the layers (docs/INTERNALS.md, "Layers"): no module imports one above it.

Every import in the package counts, including those inside functions (lazy) and under
`TYPE_CHECKING`: a lazy upward import is still an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sieve_jupyter"

#: layer of each part of the package, bottom first; a module may import its own layer and below
LAYERS: dict[str, int] = {
    "runtime": 0,  # inside workers: the standard library and cloudpickle only
    "_errors": 1,
    "_imports": 1,
    "_hooks": 1,
    "_version": 1,
    "_config": 1,
    "spec": 2,
    "build": 3,
    "backends": 4,
    "manager": 5,
    "sdk": 6,
    # loading a model.yaml registers models through the SDK, and `%sieve load` (the notebook
    # layer) calls it; writing one is part of export
    "modelyaml": 6,
    "jupyter": 7,
    # what sits on top of the notebook layer: deployment and the command line
    "export": 8,
    "bundle": 8,  # the export layer's package (`export` would shadow `sieve.export`)
    "serve": 8,
    "deploy": 8,
    "cli": 8,
    "__init__": 9,  # the public face re-exports everything
}


def _part(module: str) -> str:
    """The layer key of a dotted module name inside the package ("sieve_jupyter.x.y" -> "x")."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "sieve_jupyter":
                found.append((node.lineno, node.module))
                continue
            for alias in node.names:  # `from sieve_jupyter import x`: a module, or a root name
                is_module = (PACKAGE / alias.name).is_dir() or (
                    PACKAGE / f"{alias.name}.py"
                ).is_file()
                found.append(
                    (node.lineno, f"sieve_jupyter.{alias.name}" if is_module else "sieve_jupyter")
                )
    return [(line, name) for line, name in found if name.split(".")[0] == "sieve_jupyter"]


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists())
    }
    assert parts <= set(LAYERS), (
        f"give these a layer in this test and INTERNALS.md: {sorted(parts - set(LAYERS))}"
    )


def test_imports_only_point_down() -> None:
    upward: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        own = LAYERS[_part(module)] if module != "sieve_jupyter" else LAYERS["__init__"]
        for line, target in _imports(path):
            if target == "sieve_jupyter" and module != "sieve_jupyter":
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports the package root")
                continue
            layer = LAYERS.get(_part(target), LAYERS["__init__"])
            if layer > own:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_runtime_imports_nothing_else_of_the_package() -> None:
    for path in sorted((PACKAGE / "runtime").rglob("*.py")):
        for line, target in _imports(path):
            assert target.startswith("sieve_jupyter.runtime"), f"{path.name}:{line} {target}"
