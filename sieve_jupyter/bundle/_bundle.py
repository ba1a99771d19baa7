"""A bundle on disk: writing one from captured code, and reading (validating) one back.

Layout::

    sieve.yaml          the spec: module, default function, each function's FunctionSpec
    src/main.py         the captured module
    src/...             the local modules it imports and the files its import reads, found
                        in the exported code's folder (see `_export._IMPORT_SCRIPT`)
    requirements.txt    the workers' Python packages (with the cloudpickle pin)
    Dockerfile          from the Docker backend's builder, plus the server and the code
    .dockerignore
    openapi.json        the HTTP API, from the type hints
    README.md           from sieve.Metadata, with how to build, run and call it
    .sieve/             what the image needs of sieve-jupyter (the package, the server's pins)

The same inputs give byte-identical files (no timestamps, sorted everything).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sieve_jupyter._errors import SpecError
from sieve_jupyter._version import __version__
from sieve_jupyter.build import BuildOptions, installed_pins, make_bundle_image
from sieve_jupyter.bundle._readme import bundle_readme
from sieve_jupyter.spec import Environment, FunctionSpec, openapi_document
from sieve_jupyter.spec._model import canonical_json

__all__ = [
    "BUNDLE_VERSION",
    "MODULE",
    "SERVER_PACKAGES",
    "Bundle",
    "BundleFunction",
    "bundle_files",
    "read_bundle",
    "write_bundle",
]

BUNDLE_VERSION = 1
MODULE = "main"
SPEC_FILE = "sieve.yaml"
#: What the server's own virtualenv holds, pinned to the exporting environment's versions.
SERVER_PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httptools",
    "uvloop",
    "python-multipart",
    "httpx",
    "jsonschema",
    "fastjsonschema",
    "pydantic",
    "PyYAML",
    "packaging",
    "anyio",
    "cloudpickle",
)
_DOCKERIGNORE = """\
# Only what the Dockerfile copies belongs in the build context.
**/__pycache__
**/*.py[cod]
**/.ipynb_checkpoints
.git
.env
*.env
"""
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BundleFunction:
    """One function of a bundle: the module-level name it is bound to, and its spec."""

    entry: str
    spec: FunctionSpec

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Bundle:
    """A bundle read from disk (see `read_bundle`)."""

    root: Path
    module: str
    default: str
    functions: tuple[BundleFunction, ...]
    source: str = ""

    @property
    def src(self) -> Path:
        return self.root / "src"

    def function(self, name: str) -> BundleFunction:
        for function in self.functions:
            if function.name == name:
                return function
        raise KeyError(name)

    def openapi(self) -> dict[str, Any]:
        return openapi_document(
            [f.spec for f in self.functions],
            default=self.default,
            version=__version__,
        )


def merged_environment(specs: Sequence[FunctionSpec]) -> Environment:
    """One environment that serves every function: packages, apt packages and run commands
    of all, in order, without repeats; CUDA if any function has it.

    Raises:
        SpecError: the functions ask for different Python versions.
    """
    versions = sorted({s.environment.python_version for s in specs})
    if len(versions) > 1:
        raise SpecError(
            "python_version",
            f"the functions of one bundle ask for {', '.join(versions)}.",
            "give them the same python_version (or leave it out), or export them apart.",
        )
    cuda = sorted({s.environment.cuda_version for s in specs if s.environment.cuda_version})
    bases = sorted({s.environment.base_image for s in specs if s.environment.base_image})
    if len(bases) > 1:
        raise SpecError(
            "base_image",
            f"the functions of one bundle ask for {', '.join(bases)}.",
            "give them the same base image, or export them apart.",
        )

    def union(field: str) -> list[str]:
        return list(dict.fromkeys(x for s in specs for x in getattr(s.environment, field)))

    return Environment(
        python_version=versions[0],
        python_packages=tuple(union("python_packages")),
        system_packages=tuple(union("system_packages")),
        cuda_version=cuda[-1] if cuda else None,
        run_commands=tuple(union("run_commands")),
        base_image=bases[0] if bases else None,
    )


def _package_files() -> dict[str, bytes]:
    """This package's files, for the image (sieve-jupyter is not on the package index)."""
    files: dict[str, bytes] = {}
    for path in sorted(_PACKAGE_DIR.rglob("*")):
        relative = path.relative_to(_PACKAGE_DIR)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix in (".pyc",):
            continue
        files[f".sieve/lib/sieve_jupyter/{relative.as_posix()}"] = path.read_bytes()
    return files


def spec_document(
    functions: Sequence[BundleFunction], *, default: str, source: str
) -> dict[str, Any]:
    return {
        "bundle_version": BUNDLE_VERSION,
        "sieve_jupyter": __version__,
        "module": MODULE,
        "source": source,
        "default": default,
        "functions": [{"entry": f.entry, "spec": f.spec.to_dict()} for f in functions],
    }


def bundle_files(
    module_source: str,
    functions: Sequence[BundleFunction],
    *,
    default: str,
    source: str,
    base_image: str | None = None,
    ca_bundle: Path | None = None,
    local_files: dict[str, bytes] | None = None,
) -> dict[str, bytes]:
    """Every file of a bundle, by path (see the module docstring). `local_files` (by path in
    the exported code's folder: its local modules, files its import reads) go beside the
    module in ``src/``.

    Raises:
        SpecError: the functions cannot share one image (different Python versions).
        ConfigurationError: the CA bundle cannot be read.
    """
    specs = [f.spec for f in functions]
    document = spec_document(functions, default=default, source=source)
    spec_yaml = (
        "# A sieve-jupyter bundle (schema: sieve_jupyter/spec/sieve-bundle.schema.json).\n"
        + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    )
    openapi = openapi_document(specs, default=default, version=__version__)
    environment = merged_environment(specs)
    image = make_bundle_image(
        environment,
        options=BuildOptions(base_image=base_image, ca_bundle=ca_bundle),
        server_requirements=installed_pins(SERVER_PACKAGES),
        spec_json=canonical_json(document),
        openapi_json=canonical_json(openapi),
        gpu=any(s.gpu is not None and not s.gpu.is_cpu for s in specs),
    )
    files: dict[str, bytes] = {
        "sieve.yaml": spec_yaml.encode(),
        **{f"src/{name}": data for name, data in (local_files or {}).items()},
        f"src/{MODULE}.py": module_source.encode(),
        "openapi.json": (json.dumps(openapi, indent=2, sort_keys=True) + "\n").encode(),
        ".dockerignore": _DOCKERIGNORE.encode(),
        "README.md": bundle_readme(specs, default=default, environment=environment).encode(),
        **image.files,
        **_package_files(),
    }
    return dict(sorted(files.items()))


def write_bundle(
    files: dict[str, bytes],
    directory: str | os.PathLike[str],
    *,
    marker: str = SPEC_FILE,
    what: str = "a bundle",
) -> Path:
    """Write `files` as the bundle at `directory`, replacing a bundle that was there.

    The new bundle is written beside it and moved into place, so a failed write leaves the old
    one as it was. `marker` is the file that shows a folder is one (and `what` says what that
    is): a folder without it is never replaced.

    Raises:
        FileExistsError: `directory` exists, is not empty and is not a bundle.
    """
    target = Path(directory).resolve()
    if target.exists() and any(target.iterdir()) and not (target / marker).exists():
        raise FileExistsError(
            f"{target} exists and is not {what} (no {marker}). Fix: choose an empty or new folder."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".sieve-bundle-", dir=target.parent))
    try:
        for name, data in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        old = None
        if target.exists():
            old = target.parent / f"{staging.name}-old"
            target.rename(old)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# -- reading ---------------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    text = (_PACKAGE_DIR / "spec" / "sieve-bundle.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _line_of(root: Any, path: Sequence[Any]) -> int | None:
    """The 1-based line of the YAML node at `path` (or of the deepest part of it there is)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for key in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == key:
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(key, int)
            and 0 <= key < len(node.value)
        ):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _dotted(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def read_bundle(directory: str | os.PathLike[str]) -> Bundle:
    """Read and validate the bundle at `directory`.

    Raises:
        SpecError: sieve.yaml is missing, is not YAML, or breaks the schema or a spec rule;
            the field names the line (``sieve.yaml line 12: functions[0].spec.kind``).
    """
    from sieve_jupyter.spec._schema_check import SchemaCheck

    root = Path(directory).resolve()
    path = root / SPEC_FILE
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(
            str(path),
            f"cannot be read ({exc.strerror}).",
            "give the folder of an exported bundle (it holds sieve.yaml).",
        ) from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{SPEC_FILE} line {mark.line + 1}" if mark is not None else SPEC_FILE
        raise SpecError(
            where, f"is not valid YAML ({getattr(exc, 'problem', exc)}).", "fix the YAML syntax."
        ) from None
    problems = SchemaCheck(_schema()).problems(data)
    if problems:
        location = list(problems[0].path)
        line = _line_of(node, location)
        raise SpecError(
            f"{SPEC_FILE} line {line}: {_dotted(location)}",
            f"{problems[0].message}.",
            "correct it (the schema is sieve_jupyter/spec/sieve-bundle.schema.json), or export "
            "the bundle again.",
        )
    functions = []
    for index, item in enumerate(data["functions"]):
        try:
            spec = FunctionSpec.from_dict(item["spec"])
        except SpecError as exc:
            parts: list[Any] = ["functions", index, "spec"]
            parts += [p for p in exc.field.split(".") if p]
            line = _line_of(node, parts)
            raise SpecError(
                f"{SPEC_FILE} line {line}: functions[{index}].spec.{exc.field}",
                exc.problem,
                exc.fix,
            ) from None
        functions.append(BundleFunction(entry=item["entry"], spec=spec))
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise SpecError(
            f"{SPEC_FILE} line {_line_of(node, ['functions'])}: functions",
            f"{duplicate!r} appears twice.",
            "give each function its own name.",
        )
    if data["default"] not in names:
        raise SpecError(
            f"{SPEC_FILE} line {_line_of(node, ['default'])}: default",
            f"{data['default']!r} is not one of the bundle's functions ({', '.join(names)}).",
            "name one of them.",
        )
    if not (root / "src" / f"{data['module']}.py").is_file():
        raise SpecError(
            f"{SPEC_FILE} line {_line_of(node, ['module'])}: module",
            f"src/{data['module']}.py does not exist.",
            "export the bundle again.",
        )
    return Bundle(
        root=root,
        module=data["module"],
        default=data["default"],
        functions=tuple(functions),
        source=data.get("source", ""),
    )
