"""The shape of a model.yaml, as pydantic models; the published JSON Schema is generated from them.

`validate_document` turns pydantic's errors into `YamlProblem`s that name the file, line,
column and key path, say what is wrong and how to fix it (unknown keys get a did-you-mean).
Pure data: nothing here reads files beyond the text it is given, fetches or runs anything.

Regenerate the checked-in schema after changing a model here (a test says when):
``python -c "import sieve_jupyter.modelyaml as m; m.SCHEMA_PATH.write_text(m.json_schema_text())"``
"""

from __future__ import annotations

import difflib
import json
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sieve_jupyter._errors import ModelYamlError, YamlProblem
from sieve_jupyter.modelyaml._positions import YamlDocument

__all__ = [
    "Batch",
    "Entrypoint",
    "FileEntry",
    "Input",
    "ModelEntry",
    "ModelFile",
    "Output",
    "Repository",
    "Runtime",
    "UNIVERSAL_NAME",
    "json_schema",
    "json_schema_text",
    "validate_document",
]

#: The name of a universal runtime: it serves any model name without an entry of its own.
UNIVERSAL_NAME = "${model.name}"

_MODEL_NAME = r"^(\$\{model\.name\}|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$"
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
_FILE_NAME = r"^[A-Za-z_][A-Za-z0-9_-]*$"
_ENTRYPOINT = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
_HASH = r"^[0-9a-fA-F]{4,40}$"


def _text(value: Any) -> Any:
    """YAML reads ``version: 1.0`` as a number; a version is text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Repository(_Section):
    """Where the model's code lives. Omit it for code in the directory of the model.yaml."""

    url: str = Field(
        description="A git URL (https://, ssh://, git@host:path, file://) or a local directory "
        "(relative to this file)."
    )
    branch: str | None = Field(
        None, description="Branch to check out (default: the remote's default branch)."
    )
    hash: str | None = Field(
        None,
        pattern=_HASH,
        description="Commit to check out (full or abbreviated); verified "
        "after fetching. Give branch or hash, not both.",
    )
    access_token: str | None = Field(
        None,
        description="${ENV_VAR} naming the variable that holds a token for an https "
        "remote. Used for the clone only; never stored.",
    )


class FileEntry(_Section):
    """A file the model needs (weights, configs), passed to the code as an absolute path."""

    name: str = Field(pattern=_FILE_NAME, description="Referenced as ${model.files.NAME.url}.")
    url: str = Field(
        description="A path relative to the repository, an absolute path, or a file://, "
        "http:// or https:// URL (fetched into a cache)."
    )
    upload: bool = Field(
        True, description="false: pass the url through as written (nothing is fetched or checked)."
    )


class Input(_Section):
    """One keyword argument of an entrypoint."""

    name: str = Field(pattern=_IDENTIFIER, description="The parameter's name.")
    value: Any = Field(
        description="A literal, or exactly one reference: ${ENV_VAR}, ${datapoints}, "
        "${inputs.NAME}, ${model.name}, ${model.runtime.device}, ${model.files.NAME.url}, "
        "${model.runtime.load.output.NAME}, ${model.runtime.load|predict.inputs.NAME}."
    )


class Output(_Section):
    """What an entrypoint returns."""

    name: str = Field(
        pattern=_IDENTIFIER,
        description="Referenced as ${model.runtime.load.output.NAME} (load only).",
    )
    keys: list[str] = Field(
        default_factory=list,
        description="Keys every result must have (each item of a list "
        "result: one prediction per datapoint).",
    )


class Entrypoint(_Section):
    """A function of the code and how its arguments are wired."""

    entrypoint: str = Field(
        pattern=_ENTRYPOINT,
        description="module[.sub]:function, importable from the repository's root.",
    )
    inputs: list[Input] = Field(default_factory=list)
    output: Output | None = None


class Batch(_Section):
    """Batching hints of the Efemarai format; read for compatibility, not used."""

    max_size: int | None = Field(None, ge=1)
    image_size: list[int] | None = None


class Runtime(_Section):
    """How the model runs."""

    image: str | None = Field(
        None,
        description="Docker image the Docker backend builds on (it must provide the "
        "kernel's Python, or apt to install it).",
    )
    device: Literal["cpu", "gpu", "cuda"] = Field(
        "cpu",
        description="gpu (or cuda) asks for a GPU; ${model.runtime.device} is then cuda "
        "where one was given, else cpu.",
    )
    gpu: Any = Field(
        None,
        description="sieve-jupyter extension: the kind of GPU for device: gpu, e.g. L4 "
        "or {kind: A100, split: 2} (default T4).",
    )
    load: Entrypoint | None = Field(
        None, description="Called once per worker; its output is the loaded model."
    )
    predict: Entrypoint = Field(description="Called for every .run() / .push().")
    batch: Batch | None = None


class ModelEntry(_Section):
    """One model."""

    name: str = Field(
        pattern=_MODEL_NAME,
        description="Unique in the file. ${model.name} makes this entry a "
        "universal runtime for any model name without an entry of its own.",
    )
    description: str | None = None
    version: Annotated[str | None, BeforeValidator(_text)] = None
    repository: Repository | None = None
    files: list[FileEntry] = Field(default_factory=list)
    runtime: Runtime | None = Field(
        None, description="Omit to take the runtime from the repository's own model.yaml."
    )


class ModelFile(_Section):
    """A model.yaml: models defined by a repository, files and a runtime (the Efemarai format)."""

    models: list[ModelEntry] = Field(min_length=1)
    # Other sections of an Efemarai definition file are allowed and left alone.
    project: Any = None
    datasets: Any = None
    domains: Any = None


# --- errors -----------------------------------------------------------------------------------

#: (section, field) -> (what a valid value looks like, an example line), for messages;
#: section "" matches any
_FIELD_HINTS: dict[tuple[str, str], tuple[str, str]] = {
    ("ModelFile", "models"): ("a list of models", "models: [{name: my-model, runtime: ...}]"),
    ("ModelEntry", "name"): (
        "a name of letters, digits, '-', '_' and '.' (or ${model.name})",
        "name: yolor-p6",
    ),
    ("Input", "name"): ("a Python identifier (a parameter name)", "name: params_url"),
    ("Output", "name"): ("a Python identifier", "name: model"),
    ("FileEntry", "name"): ("a name of letters, digits, '_' and '-'", "name: params"),
    ("Entrypoint", "entrypoint"): ("module[.sub]:function", "entrypoint: inference:predict"),
    ("Runtime", "predict"): ("the predict entrypoint", "predict: {entrypoint: inference:predict}"),
    ("Repository", "url"): ("a git URL or a directory", "url: https://github.com/org/repo"),
    ("FileEntry", "url"): ("a path or URL", "url: weights/model.pt"),
    ("Input", "value"): ("a literal or one ${...} reference", "value: ${datapoints}"),
    ("Repository", "hash"): ("a commit hash (4 to 40 hex digits)", "hash: 3f2a9c1b"),
    ("Runtime", "device"): ("cpu or gpu", "device: gpu"),
}
_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list (lines starting with '- ')",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "dict_type": "a mapping (key: value lines)",
}


def _section_at(location: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class whose fields live at `location` (None when it is not a section)."""
    current: Any = ModelFile
    for part in location:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = info.annotation
        # unwrap Optional[X] and list[X] down to the section class
        while typing.get_origin(current) is not None:
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[0] if args else None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _hint(location: tuple[str | int, ...]) -> tuple[str, str]:
    section = _section_at(location[:-1])
    field = str(location[-1]) if location and isinstance(location[-1], str) else ""
    return _FIELD_HINTS.get((section.__name__ if section else "", field), ("", ""))


def _example(example: str) -> str:
    return f", e.g. `{example}`" if example else ""


def _problem(document: YamlDocument, error: Any) -> YamlProblem:
    location = tuple(error["loc"])
    kind = error["type"]
    field = str(location[-1]) if location and isinstance(location[-1], str) else ""
    what, example = _hint(location)
    if kind == "extra_forbidden":
        section = _section_at(location[:-1])
        known = sorted(section.model_fields) if section is not None else []
        close = difflib.get_close_matches(field, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return document.problem(
            location,
            "is not a known key.",
            f"{hint}Known keys here: {', '.join(known)}.",
            key=True,
        )
    if kind == "missing":
        return document.problem(location, "is required.", f"add it{_example(example)}.")
    value = error.get("input")
    if kind == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
        # e.g. a commit hash of digits only: YAML reads it as a number (and 0-prefixed ones
        # as octal, another number than the one written)
        return document.problem(
            location,
            f"must be text, but YAML reads it as the number {value!r}.",
            'put the value in quotes as you wrote it (hash: "0123abcd").',
        )
    if kind in _TYPE_NAMES:
        return document.problem(
            location,
            f"must be {_TYPE_NAMES[kind]}, got {_describe(value)}.",
            f"write {what or _TYPE_NAMES[kind]}{_example(example)}.",
        )
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return document.problem(
            location,
            f"must be one of {expected}, got {_describe(value)}.",
            f"write one of {expected}.",
        )
    if kind == "string_pattern_mismatch":
        return document.problem(
            location,
            f"{value!r} is not {what or 'valid here'}.",
            f"write {what or 'a valid value'}{_example(example)}.",
        )
    if kind == "too_short" and field == "models":
        return document.problem(location, "lists no model.", f"add one{_example(example)}.")
    return document.problem(
        location, f"{error['msg']} (got {_describe(value)}).", f"write {what or 'a valid value'}."
    )


def _merge_misspellings(errors: list[Any]) -> list[Any]:
    """Drop "X is required" where the same mapping has an unknown key close to X: the
    did-you-mean of that key already says it."""
    extras: dict[tuple[Any, ...], list[str]] = {}
    for error in errors:
        if error["type"] == "extra_forbidden":
            extras.setdefault(tuple(error["loc"][:-1]), []).append(str(error["loc"][-1]))
    kept = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "missing" and difflib.get_close_matches(
            str(loc[-1]), extras.get(loc[:-1], []), n=1
        ):
            continue
        kept.append(error)
    return kept


def validate_document(document: YamlDocument) -> ModelFile:
    """Check a parsed model.yaml against the schema.

    Raises:
        ModelYamlError: every problem found, each with its position and fix.
    """
    if not isinstance(document.data, dict):
        raise document.error(
            (),
            f"must be a mapping with a 'models' list, got {_describe(document.data)}.",
            "start the file with 'models:' and list the models under it.",
        )
    try:
        return ModelFile.model_validate(document.data)
    except ValidationError as exc:
        errors = _merge_misspellings(list(exc.errors()))
        problems = [_problem(document, error) for error in errors]
        problems.sort(key=lambda p: (p.line, p.column))
        raise ModelYamlError(problems) from None


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of model.yaml (what `model.schema.json` holds)."""
    schema = ModelFile.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "model.yaml",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
