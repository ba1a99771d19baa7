"""Reading model.yaml files: parse, substitute the environment, validate, pick the entries.

An entry without ``runtime`` takes it from the ``model.yaml`` at its repository's root: the
entry of the same name there, else that file's universal entry (named ``${model.name}``), which
serves any model name without an entry of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sieve_jupyter._errors import ModelYamlError, SpecError, YamlProblem
from sieve_jupyter.modelyaml._positions import Location, YamlDocument, parse_yaml
from sieve_jupyter.modelyaml._references import ModelProblems, substitute_environment
from sieve_jupyter.modelyaml._schema import (
    UNIVERSAL_NAME,
    FileEntry,
    ModelEntry,
    ModelFile,
    Runtime,
    validate_document,
)

__all__ = [
    "REPOSITORY_FILES",
    "Entry",
    "ModelDocument",
    "RuntimeSource",
    "read_document",
    "repository_runtime",
    "select_entries",
]

#: where a repository's own definition is looked for, in order
REPOSITORY_FILES = ("model.yaml", "efemarai.yaml")


@dataclass
class ModelDocument:
    """A validated model.yaml, with its positions and the problems left to report per entry."""

    path: Path
    document: YamlDocument
    content: ModelFile
    problems: ModelProblems


@dataclass(frozen=True)
class Entry:
    """One model to load: its entry and the name it is loaded under."""

    document: ModelDocument
    index: int
    entry: ModelEntry
    name: str

    @property
    def location(self) -> Location:
        return ("models", self.index)


@dataclass(frozen=True)
class RuntimeSource:
    """A runtime and the files that come with it, and where they were written."""

    document: ModelDocument
    #: location of the runtime section, e.g. ("models", 0, "runtime")
    location: Location
    runtime: Runtime
    #: each file with the document and location it was written at
    files: tuple[tuple[FileEntry, ModelDocument, Location], ...]


def read_document(path: Path, label: str, environ: Mapping[str, str]) -> ModelDocument:
    """Parse and validate one file, environment variables substituted.

    Raises:
        SpecError: the file cannot be read.
        ModelYamlError: it is not valid YAML, or does not fit the schema.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            label,
            f"there is no file {path}.",
            "check the path (relative paths start at the notebook's working directory).",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(label, f"cannot read {path} ({exc}).", "check the file.") from None
    document = parse_yaml(text, label)
    problems = ModelProblems()
    substituted = document.with_data(substitute_environment(document, environ, problems))
    try:
        content = validate_document(substituted)
    except ModelYamlError as exc:
        # shape problems first; reference problems of the whole file with them
        raise ModelYamlError([*exc.problems, *problems.all()]) from None
    model_document = ModelDocument(path, substituted, content, problems)
    _check_names(model_document)
    return model_document


def _check_names(document: ModelDocument) -> None:
    seen: dict[str, int] = {}
    problems: list[YamlProblem] = []
    for index, entry in enumerate(document.content.models):
        location: Location = ("models", index, "name")
        if entry.name in seen:
            line = document.document.position(("models", seen[entry.name], "name"))[0]
            what = (
                "a second universal runtime"
                if entry.name == UNIVERSAL_NAME
                else (f"{entry.name!r} is already the name of the model on line {line}")
            )
            problems.append(
                document.document.problem(
                    location, f"{what}; names are unique in a file.", "rename one of them."
                )
            )
        seen.setdefault(entry.name, index)
        files: dict[str, int] = {}
        for position, item in enumerate(entry.files):
            if item.name in files:
                problems.append(
                    document.document.problem(
                        ("models", index, "files", position, "name"),
                        f"{item.name!r} is already the name of files[{files[item.name]}]; "
                        "file names are unique per model.",
                        "rename one of them.",
                    )
                )
            files.setdefault(item.name, position)
    if problems:
        raise ModelYamlError(problems)


def select_entries(document: ModelDocument, name: str | None) -> list[Entry]:
    """The entries to load: all named ones, or the one called `name` (a universal entry
    serves a name that has no entry of its own).

    Raises:
        ModelYamlError: no entry can serve `name`, the file has only a universal entry and no
            name was given, or the chosen entries hold problems (an unset variable, ...).
    """
    models = document.content.models
    universal = next((i for i, m in enumerate(models) if m.name == UNIVERSAL_NAME), None)
    named = [Entry(document, i, m, m.name) for i, m in enumerate(models) if i != universal]
    if name is not None:
        chosen = [e for e in named if e.name == name]
        if not chosen:
            if universal is None:
                raise document.document.error(
                    ("models",),
                    f"has no model named {name!r} (it has "
                    f"{', '.join(repr(e.name) for e in named)}).",
                    "load one of those names, or add an entry for it (or a universal entry "
                    "named ${model.name}).",
                )
            chosen = [Entry(document, universal, models[universal], name)]
    else:
        chosen = named
        if not chosen:
            raise document.document.error(
                ("models", universal or 0, "name"),
                "is a universal runtime (${model.name}), which serves a name it is asked for.",
                'load it with a name: sieve.load_yaml(path, name="my-model").',
            )
    problems = document.problems.of([e.index for e in chosen])
    if problems:
        raise ModelYamlError(problems)
    return chosen


def repository_runtime(
    entry: Entry, root: Path, label: str, environ: Mapping[str, str]
) -> RuntimeSource:
    """The runtime of `entry`: its own, or the one the repository at `root` defines for it.

    Raises:
        ModelYamlError: neither exists (or the repository's file is invalid).
    """
    own_files = tuple(
        (f, entry.document, (*entry.location, "files", i)) for i, f in enumerate(entry.entry.files)
    )
    if entry.entry.runtime is not None:
        return RuntimeSource(
            entry.document, (*entry.location, "runtime"), entry.entry.runtime, own_files
        )
    found = [root / name for name in REPOSITORY_FILES if (root / name).is_file()]
    here = entry.document.path.resolve()
    found = [path for path in found if path.resolve() != here]
    if not found:
        raise entry.document.document.error(
            entry.location,
            f"has no runtime, and its code ({root}) has no {' or '.join(REPOSITORY_FILES)} to "
            "take one from.",
            "add a runtime: section with load and predict entrypoints.",
        )
    theirs = read_document(found[0], f"{label}/{found[0].name}", environ)
    models = theirs.content.models
    index = next((i for i, m in enumerate(models) if m.name == entry.name), None)
    if index is None:
        index = next((i for i, m in enumerate(models) if m.name == UNIVERSAL_NAME), None)
    if index is None:
        raise entry.document.document.error(
            (*entry.location, "name"),
            f"has no runtime here, and {found[0].name} of its repository defines neither "
            f"{entry.name!r} nor a universal runtime (${{model.name}}); it defines "
            f"{', '.join(repr(m.name) for m in models)}.",
            "add a runtime: section, or use one of those names.",
        )
    problems = theirs.problems.of([index])
    if problems:
        raise ModelYamlError(problems)
    source = models[index]
    if source.runtime is None:
        raise theirs.document.error(
            ("models", index), "has no runtime either.", "add a runtime: section."
        )
    # the repository's files, with the entry's own ones taking precedence by name
    names = {f.name for f, _, _ in own_files}
    files = tuple(
        (f, theirs, ("models", index, "files", i))
        for i, f in enumerate(source.files)
        if f.name not in names
    )
    return RuntimeSource(theirs, ("models", index, "runtime"), source.runtime, (*files, *own_files))
