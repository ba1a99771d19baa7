"""One model entry -> everything needed to run it: code root, files, entrypoints, call signature.

Fetches what is remote (see `_fetch`), reads the entrypoints' code without importing it (see
`_code`) and checks every input against it, so a wrong name or reference fails here, with its
line, before any worker starts.
"""

from __future__ import annotations

import difflib
import inspect
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sieve_jupyter._errors import ModelYamlError, SpecError, YamlProblem
from sieve_jupyter.modelyaml._code import (
    UNKNOWN,
    EntrypointCode,
    EntrypointNotFound,
    read_entrypoint,
)
from sieve_jupyter.modelyaml._documents import Entry, RuntimeSource, repository_runtime
from sieve_jupyter.modelyaml._fetch import (
    FetchError,
    checkout,
    fetch_file,
    has_credentials,
    is_git_remote,
)
from sieve_jupyter.modelyaml._positions import Location, YamlDocument, format_location
from sieve_jupyter.modelyaml._references import plan_inputs, reference_in
from sieve_jupyter.modelyaml._schema import Entrypoint, Runtime
from sieve_jupyter.spec import GpuRequest, coerce_gpu
from sieve_jupyter.spec._validate import check_image_reference

__all__ = ["ResolvedModel", "resolve_entry"]


@dataclass
class ResolvedModel:
    """A model ready to register: plain data (no secrets) plus the call signature.

    Attributes:
        name: the model's name. source: where its entry is (``model.yaml:3``).
        root: the code's directory on this machine. in_place: the code is the user's own
            directory (not a cached checkout).
        repository: the repository URL as shown (no credentials); commit: its checked-out
            commit (None for code used in place).
        files: file name -> absolute path (or the URL as written, for ``upload: false``).
        mounts: what a container needs mounted (see `FunctionSpec.mounts`).
        functions: the worker's view of ``load`` and ``predict`` (see
            `sieve_jupyter.runtime._entrypoints`).
        parameters: the call arguments as `inspect.Parameter`s; annotations: their types and
            ``return``; doc: predict's docstring or the model's description.
        environment: variables the worker reads (declared as `sieve.Env`).
    """

    name: str
    source: str
    description: str
    version: str | None
    root: Path
    in_place: bool
    repository: str | None
    commit: str | None
    files: dict[str, str]
    mounts: list[str]
    device: str
    gpu: GpuRequest | None
    image: str | None
    functions: dict[str, dict[str, Any]]
    parameters: list[inspect.Parameter]
    annotations: dict[str, Any]
    doc: str
    environment: list[str] = field(default_factory=list)

    def worker_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": str(self.root),
            "device": self.device,
            "files": dict(self.files),
            "functions": self.functions,
        }


def resolve_entry(
    entry: Entry, environ: Mapping[str, str], cache: Path, refresh: bool
) -> ResolvedModel:
    """Fetch and check one entry.

    Raises:
        ModelYamlError: any problem, at its position (fetch failures at the URL that failed).
    """
    document = entry.document.document
    root, in_place, shown, commit = _code_root(entry, environ, cache, refresh)
    source = repository_runtime(
        entry, root, str(root) if in_place else f"{shown}@{commit}", environ
    )
    runtime = source.runtime
    where = source.location
    runtime_doc = source.document.document
    problems: list[YamlProblem] = []

    files, mounts = _fetch_files(source, root, in_place, cache, refresh, problems)
    device, gpu, image = _placement(runtime, runtime_doc, where, problems)
    functions = {"load": runtime.load, "predict": runtime.predict}
    code = _read_code(functions, root, runtime_doc, where, problems)
    names = [item.name for item, _, _ in source.files]  # a file that failed is still named
    plan = plan_inputs(runtime_doc, where, functions, names, problems)
    if "self" in plan.arguments:
        index = next(
            i
            for i, item in enumerate(runtime.predict.inputs)
            if item.name == plan.arguments["self"]
        )
        problems.append(
            runtime_doc.problem(
                (*where, "predict", "inputs", index, "value"),
                "${inputs.self} cannot be a call argument (the model's own name for itself).",
                "give the argument another name.",
            )
        )
    if problems:
        raise ModelYamlError(problems)

    parameters, annotations = _call_signature(plan.arguments, code.get("predict"))

    worker_functions = _worker_functions(functions, plan.inputs, runtime_doc, where)
    predict_code = code.get("predict")
    line = document.position(entry.location)[0]
    return ResolvedModel(
        name=entry.name,
        source=f"{document.file}:{line}",
        description=entry.entry.description or "",
        version=entry.entry.version,
        root=root,
        in_place=in_place,
        repository=shown,
        commit=commit,
        files=files,
        mounts=list(dict.fromkeys(mounts)),
        device=device,
        gpu=gpu,
        image=image,
        functions=worker_functions,
        parameters=parameters,
        annotations=annotations,
        doc=(predict_code.doc if predict_code else "") or entry.entry.description or "",
        environment=plan.environment,
    )


def _fetch_files(
    source: RuntimeSource,
    root: Path,
    in_place: bool,
    cache: Path,
    refresh: bool,
    problems: list[YamlProblem],
) -> tuple[dict[str, str], list[str]]:
    """The model's files, fetched (name -> local path), and what the worker mounts: the code,
    and each uploaded file outside it (read-only but a repository used in place)."""
    files: dict[str, str] = {}
    mounts = [str(root) if in_place else f"{root}:ro"]
    for item, origin, location in source.files:
        try:
            path = _file(item.url, item.upload, root, cache, refresh)
        except FetchError as exc:
            problems.append(origin.document.problem((*location, "url"), exc.problem, exc.fix))
            continue
        files[item.name] = path
        if item.upload and not Path(path).is_relative_to(root):
            mounts.append(f"{path}:ro")
    return files, mounts


def _placement(
    runtime: Runtime, runtime_doc: YamlDocument, where: Location, problems: list[YamlProblem]
) -> tuple[str, GpuRequest | None, str | None]:
    """The runtime's device (``cpu`` or ``gpu``), its GPU request and its image, checked."""
    gpu: GpuRequest | None = None
    device = "gpu" if runtime.device in ("gpu", "cuda") else "cpu"
    if runtime.gpu is not None and device == "cpu":
        problems.append(
            runtime_doc.problem(
                (*where, "gpu"),
                "names a GPU, but device is cpu.",
                "set device: gpu, or remove gpu:.",
            )
        )
    elif device == "gpu":
        try:
            gpu = coerce_gpu(True if runtime.gpu is None else runtime.gpu, "gpu")
        except SpecError as exc:
            problems.append(runtime_doc.problem((*where, "gpu"), exc.problem, exc.fix))
    image = None
    if runtime.image is not None:
        try:
            image = check_image_reference(runtime.image, "image")
        except SpecError as exc:
            problems.append(runtime_doc.problem((*where, "image"), exc.problem, exc.fix))
    return device, gpu, image


def _read_code(
    functions: Mapping[str, Entrypoint | None],
    root: Path,
    runtime_doc: YamlDocument,
    where: Location,
    problems: list[YamlProblem],
) -> dict[str, EntrypointCode]:
    """Each entrypoint's code, read from the repository, with its inputs checked against it."""
    code: dict[str, EntrypointCode] = {}
    for kind, function in functions.items():
        if function is None:
            continue
        try:
            code[kind] = read_entrypoint(root, function.entrypoint)
        except EntrypointNotFound as exc:
            problems.append(runtime_doc.problem((*where, kind, "entrypoint"), *exc.args))
            continue
        problems += _check_inputs(
            runtime_doc, (*where, kind), function.inputs, code[kind], function.entrypoint
        )
    return code


def _worker_functions(
    functions: Mapping[str, Entrypoint | None],
    inputs: Mapping[str, Any],
    runtime_doc: YamlDocument,
    where: Location,
) -> dict[str, dict[str, Any]]:
    """What the worker is told of each entrypoint: where it is, how its inputs get their
    values, its output's keys, and the positions its messages point to."""

    def at(location: Location) -> str:
        line, column = runtime_doc.position(location)
        return f"{runtime_doc.file}:{line}:{column}: {format_location(location)}"

    worker_functions: dict[str, dict[str, Any]] = {}
    for kind, function in functions.items():
        if function is None:
            continue
        worker_functions[kind] = {
            "entrypoint": function.entrypoint,
            "inputs": inputs.get(kind, []),
            "output": function.output.model_dump() if function.output else None,
            # where the worker's messages point
            "at": {
                "entrypoint": at((*where, kind, "entrypoint")),
                "keys": at((*where, kind, "output", "keys")),
            },
        }
    return worker_functions


def _code_root(
    entry: Entry, environ: Mapping[str, str], cache: Path, refresh: bool
) -> tuple[Path, bool, str | None, str | None]:
    """(root, used in place, repository URL as shown, commit)."""
    document = entry.document.document
    here = entry.document.path.resolve().parent
    repository = entry.entry.repository
    if repository is None:
        return here, True, None, None
    location = (*entry.location, "repository")
    url = repository.url
    if not is_git_remote(url):
        for key in ("branch", "hash"):
            if getattr(repository, key) is not None:
                raise document.error(
                    (*location, key),
                    f"applies to a git remote, but {url!r} is a local directory (used as it is).",
                    f"remove {key}:, or write the directory as a file:// URL to check it out.",
                )
        root = (here / os.path.expanduser(url)).resolve()
        if not root.is_dir():
            raise document.error(
                (*location, "url"),
                f"{root} is not a directory.",
                "give the repository's directory (relative to this file), or a git URL.",
            )
        return root, True, None, None
    if has_credentials(url):
        raise document.error(
            (*location, "url"),
            "holds a user name or password; git would store it with the checkout.",
            "remove it from the URL and write access_token: ${NAME} with NAME an environment "
            "variable holding the token.",
        )
    if repository.branch is not None and repository.hash is not None:
        raise document.error(
            (*location, "hash"),
            "is given together with branch.",
            "give branch (its latest commit) or hash (one commit), not both.",
        )
    token = None
    if repository.access_token is not None:
        reference = reference_in(repository.access_token)
        token = environ.get(reference.name) if reference is not None else None
    try:
        found = checkout(
            url,
            branch=repository.branch,
            commit=repository.hash,
            token=token,
            cache=cache,
            refresh=refresh,
        )
    except FetchError as exc:
        key = (
            "hash"
            if repository.hash and "commit" in exc.problem
            else ("branch" if repository.branch and "branch" in exc.problem else "url")
        )
        raise document.error((*location, key), exc.problem, exc.fix) from None
    return found.root, False, found.url, found.commit


def _file(url: str, upload: bool, root: Path, cache: Path, refresh: bool) -> str:
    """Where a file entry's content is on this machine (its URL as written for upload: false).

    Raises:
        FetchError: it is not there / cannot be fetched.
    """
    if not upload:
        return url
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("file", "http", "https"):
        return str(fetch_file(url, cache=cache, refresh=refresh))
    if scheme and len(scheme) > 1:
        raise FetchError(
            f"{url!r}: {scheme}:// URLs cannot be fetched.",
            "use a path, or a file://, http:// or https:// URL.",
        )
    path = (root / os.path.expanduser(url)).resolve()
    if not path.exists():
        raise FetchError(
            f"{path} does not exist.",
            "give a path relative to the repository's root, an absolute path or a URL "
            "(or upload: false to pass the value through unchecked).",
        )
    return str(path)


def _check_inputs(
    document: YamlDocument,
    where: Location,
    inputs: list[Any],
    code: EntrypointCode,
    entrypoint: str,
) -> list[YamlProblem]:
    """Inputs the function has no parameter for, and parameters no input gives."""
    if code.parameters is None:
        return []
    problems = []
    accepted = [
        p.name for p in code.parameters if p.kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")
    ]
    suggested: set[str] = set()
    for index, item in enumerate(inputs):
        if item.name in accepted or code.takes_any_keyword:
            continue
        close = difflib.get_close_matches(item.name, accepted, n=1)
        suggested.update(close)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append(
            document.problem(
                (*where, "inputs", index, "name"),
                f"{entrypoint} has no parameter {item.name!r} (it takes "
                f"{', '.join(accepted) or 'none'}).",
                f"{hint}name one of its parameters.",
            )
        )
    given = {item.name for item in inputs}
    missing = [
        p.name
        for p in code.parameters
        if not p.has_default
        and p.kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")
        and p.name not in given
        and p.name not in suggested
    ]
    if missing:
        problems.append(
            document.problem(
                (*where, "entrypoint"),
                f"{entrypoint} needs {', '.join(map(repr, missing))}, which no input gives.",
                f"add an input for each, e.g. `- {{name: {missing[0]}, value: ...}}` under inputs.",
            )
        )
    positional_only = [
        p.name for p in code.parameters if p.kind == "POSITIONAL_ONLY" and not p.has_default
    ]
    if positional_only:
        problems.append(
            document.problem(
                (*where, "entrypoint"),
                f"{entrypoint} takes {', '.join(positional_only)} by position only; inputs are "
                "passed by name.",
                "make them ordinary parameters.",
            )
        )
    return problems


def _call_signature(
    arguments: Mapping[str, str], code: EntrypointCode | None
) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """The handle's parameters (one per call argument, typed like the predict parameter that
    receives it; those with defaults last) and their annotations."""
    required: list[inspect.Parameter] = []
    optional: list[inspect.Parameter] = []
    annotations: dict[str, Any] = {}
    for argument, receiver in arguments.items():
        parameter = code.parameter(receiver) if code is not None else None
        annotation = inspect.Parameter.empty
        default = inspect.Parameter.empty
        if parameter is not None:
            if parameter.annotation is not UNKNOWN:
                annotation = parameter.annotation
                annotations[argument] = annotation
            # a default that is not a literal cannot be shown: the argument is then required
            if parameter.has_default and parameter.default is not UNKNOWN:
                default = parameter.default
        made = inspect.Parameter(
            argument,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=default,
            annotation=annotation,
        )
        (required if default is inspect.Parameter.empty else optional).append(made)
    if code is not None and code.returns is not UNKNOWN:
        annotations["return"] = code.returns
    return [*required, *optional], annotations
