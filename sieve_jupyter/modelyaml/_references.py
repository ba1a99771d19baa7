"""``${...}`` references in a model.yaml: what each one means and where it may appear.

``${NAME}`` (no dots) is an environment variable; ``${datapoints}`` and ``${inputs.NAME}`` are
arguments of `.run()` / `.push()`; dotted ``${model....}`` names are runtime variables. A value is
either a literal or exactly one reference. Environment variables are substituted when the file
is loaded, except in two places: an entrypoint's inputs (the worker reads them from its own
environment, as declared `sieve.Env`s, so a secret never enters the pickled code) and
``repository.access_token`` (read only for the clone). Pure data: the environment is passed in.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sieve_jupyter._errors import YamlProblem
from sieve_jupyter.modelyaml._positions import Location, YamlDocument
from sieve_jupyter.modelyaml._schema import UNIVERSAL_NAME, Entrypoint
from sieve_jupyter.runtime._entrypoints import ARGUMENT, ENV, LITERAL, VARIABLE

__all__ = [
    "DATAPOINTS",
    "InputPlan",
    "ModelProblems",
    "Reference",
    "plan_inputs",
    "reference_in",
    "substitute_environment",
]

#: the argument of `.run()` / `.push()` that Efemarai's ``${datapoints}`` binds
DATAPOINTS = "datapoints"
_FULL = re.compile(r"^\$\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}$")
_ANY = re.compile(r"\$\{[^}]*\}?")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ONE_REFERENCE_FIX = (
    "write a literal, or exactly one reference as the whole value (e.g. value: ${datapoints}); "
    "combine values in your code instead."
)


@dataclass(frozen=True)
class Reference:
    """One ``${name}``."""

    name: str

    @property
    def is_environment(self) -> bool:
        return "." not in self.name and self.name != DATAPOINTS

    @property
    def argument(self) -> str | None:
        """The call argument it binds, if it binds one."""
        if self.name == DATAPOINTS:
            return DATAPOINTS
        if self.name.startswith("inputs."):
            return self.name.partition(".")[2]
        return None

    def __str__(self) -> str:
        return "${" + self.name + "}"


def reference_in(value: Any) -> Reference | None:
    """The reference `value` is, or None for a literal.

    Raises:
        ValueError: the value mixes text and a reference, or the reference is malformed
            (the message is the problem to report).
    """
    if not isinstance(value, str) or "${" not in value:
        return None
    match = _FULL.match(value.strip())
    if match is None:
        if _ANY.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not a valid reference.")
        raise ValueError(
            f"{value!r} mixes text and a reference; a value is a literal or exactly one reference."
        )
    return Reference(match.group(1))


def _contains_reference(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, Mapping):
        return any(_contains_reference(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_contains_reference(v) for v in value)
    return False


# --- environment variables, when the file is loaded ---------------------------------------------


@dataclass
class ModelProblems:
    """Problems found in a document, filed by the model entry they belong to (None: the
    document as a whole), so problems of entries that are not being loaded can be left out."""

    by_model: dict[int | None, list[YamlProblem]] = field(default_factory=dict)

    def add(self, location: Location, problem: YamlProblem) -> None:
        index = location[1] if len(location) > 1 and location[0] == "models" else None
        self.by_model.setdefault(index if isinstance(index, int) else None, []).append(problem)

    def all(self) -> list[YamlProblem]:
        return [p for problems in self.by_model.values() for p in problems]

    def of(self, indexes: Sequence[int]) -> list[YamlProblem]:
        found = list(self.by_model.get(None, []))
        for index in indexes:
            found += self.by_model.get(index, [])
        return found


def _is_input_value(location: Location) -> bool:
    # ("models", i, "runtime", "load" | "predict", "inputs", j, "value")
    return (
        len(location) == 7
        and location[0] == "models"
        and location[2] == "runtime"
        and location[4] == "inputs"
        and location[6] == "value"
    )


def _unset_problem(document: YamlDocument, location: Location, name: str) -> YamlProblem:
    return document.problem(
        location,
        f"environment variable {name} is not set.",
        f"set it before loading (os.environ[{name!r}] = '...' in the notebook, or export it "
        "before starting Jupyter).",
    )


def substitute_environment(
    document: YamlDocument, environ: Mapping[str, str], problems: ModelProblems
) -> Any:
    """The document's data with ``${NAME}`` environment variables substituted where the format
    says so; problems (unset variables, misplaced or malformed references) go to `problems`."""
    return _Substitution(document, environ, problems).visit(document.data, ())


class _Substitution:
    """One pass of `substitute_environment` over a document."""

    def __init__(
        self, document: YamlDocument, environ: Mapping[str, str], problems: ModelProblems
    ) -> None:
        self.document = document
        self.environ = environ
        self.problems = problems

    def visit(self, value: Any, location: Location) -> Any:
        if _is_input_value(location):
            self._check_input_value(value, location)
            return value
        if isinstance(value, dict):
            return {k: self.visit(v, (*location, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self.visit(v, (*location, i)) for i, v in enumerate(value)]
        reference = self._reference(value, location)
        if reference is None:
            return value
        if location[-1:] == ("access_token",):
            self._check_token(reference, location)
            return value  # read for the clone only
        if len(location) == 3 and location[2] == "name" and str(reference) == UNIVERSAL_NAME:
            return value
        if not reference.is_environment:
            self._add(
                location,
                f"{reference} can only be used as the value of an entrypoint's input.",
                "write the value here as text, or an environment variable ${NAME}.",
            )
            return value
        return self._environment_value(reference.name, value, location)

    def _reference(self, value: Any, location: Location) -> Reference | None:
        """The reference `value` is (None: none, or a malformed one, reported)."""
        try:
            return reference_in(value)
        except ValueError as exc:
            self._add(location, str(exc), _ONE_REFERENCE_FIX)
            return None

    def _check_token(self, reference: Reference, location: Location) -> None:
        if not reference.is_environment:
            self._add(
                location,
                f"{reference} is not an environment variable.",
                "write access_token: ${NAME} with NAME the variable that holds the token.",
            )
        else:
            self._is_set(reference.name, location)

    def _environment_value(self, name: str, value: Any, location: Location) -> Any:
        return self.environ[name] if self._is_set(name, location) else value

    def _is_set(self, name: str, location: Location) -> bool:
        """Whether environment variable `name` is set (reported if not)."""
        if name in self.environ:
            return True
        self.problems.add(location, _unset_problem(self.document, location, name))
        return False

    def _check_input_value(self, value: Any, location: Location) -> None:
        """An entrypoint input's value may be any reference, but only as the whole value; an
        environment variable must be set."""
        if isinstance(value, (dict, list)):
            if _contains_reference(value):
                self._add(location, "has a reference inside a list or mapping.", _ONE_REFERENCE_FIX)
            return
        reference = self._reference(value, location)
        if reference is not None and reference.is_environment:
            self._is_set(reference.name, location)

    def _add(self, location: Location, message: str, fix: str) -> None:
        self.problems.add(location, self.document.problem(location, message, fix))


# --- runtime references, per model ---------------------------------------------------------------


@dataclass
class InputPlan:
    """How a model's entrypoint inputs get their values, ready for the worker.

    Attributes:
        inputs: ``{"load": [(name, (kind, data)), ...], "predict": [...]}`` (see
            `sieve_jupyter.runtime._entrypoints`).
        arguments: the call arguments in order, each with the predict input that first
            receives it directly (whose type hint and default it takes).
        environment: names of environment variables the worker reads.
    """

    inputs: dict[str, list[tuple[str, tuple[str, Any]]]] = field(default_factory=dict)
    arguments: dict[str, str] = field(default_factory=dict)
    environment: list[str] = field(default_factory=list)


def plan_inputs(
    document: YamlDocument,
    where: Location,
    functions: Mapping[str, Entrypoint | None],
    files: Sequence[str],
    problems: list[YamlProblem],
) -> InputPlan:
    """Check every input of `functions` (``load``/``predict``) and classify its value.

    Args:
        document: the document the runtime was read from (for positions).
        where: the location of the runtime section in it, e.g. ``("models", 0, "runtime")``.
        files: the names of the model's files.
        problems: where problems go.
    """
    plan = InputPlan()
    load = functions.get("load")
    load_outputs: set[str] = set()
    if load is not None and load.output is not None:
        load_outputs = {load.output.name, *load.output.keys}
    known = _known_references(functions, files, load_outputs)
    #: (function, input) -> the inputs it refers to, and whether it reads a call argument or
    #: the load output (which a load input cannot)
    edges: dict[tuple[str, str], tuple[str, str]] = {}
    late: set[tuple[str, str]] = set()
    places: dict[tuple[str, str], Location] = {}

    for kind, function in functions.items():
        if function is None:
            continue
        entries: list[tuple[str, tuple[str, Any]]] = []
        seen: set[str] = set()
        for index, item in enumerate(function.inputs):
            location = (*where, kind, "inputs", index, "value")
            places[(kind, item.name)] = location
            if item.name in seen:
                problems.append(
                    document.problem(
                        (*where, kind, "inputs", index, "name"),
                        f"{item.name!r} is given twice.",
                        "give each input once.",
                    )
                )
                continue
            seen.add(item.name)
            try:
                reference = reference_in(item.value)
            except ValueError:
                continue  # reported when the environment was substituted
            if reference is None:
                entries.append((item.name, (LITERAL, item.value)))
                continue
            source = _classify(
                document, location, kind, reference, files, load, load_outputs, known, problems
            )
            if source is None:
                continue
            entries.append((item.name, source))
            if source[0] == ENV and source[1] not in plan.environment:
                plan.environment.append(source[1])
            if source[0] == ARGUMENT:
                plan.arguments.setdefault(source[1], item.name)
                late.add((kind, item.name))
            elif source[0] == VARIABLE:
                parts = str(source[1]).split(".")
                if parts[:3] == ["model", "runtime", "load"] and parts[3] == "output":
                    late.add((kind, item.name))
                elif len(parts) == 5 and parts[3] == "inputs":
                    edges[(kind, item.name)] = (parts[2], parts[4])
        plan.inputs[kind] = entries

    _check_chains(document, places, edges, late, problems)
    return plan


def _known_references(
    functions: Mapping[str, Entrypoint | None], files: Sequence[str], load_outputs: set[str]
) -> list[str]:
    """The references an input may make, as an error lists them."""
    known = ["${model.name}", "${model.runtime.device}", "${datapoints}", "${inputs.NAME}"]
    known += [f"${{model.files.{name}.url}}" for name in files]
    known += [f"${{model.runtime.load.output.{name}}}" for name in sorted(load_outputs)]
    for kind, function in functions.items():
        if function is not None:
            known += [f"${{model.runtime.{kind}.inputs.{i.name}}}" for i in function.inputs]
    return known


def _check_chains(
    document: YamlDocument,
    places: dict[tuple[str, str], Location],
    edges: dict[tuple[str, str], tuple[str, str]],
    late: set[tuple[str, str]],
    problems: list[YamlProblem],
) -> None:
    """Follow each input's references to other inputs: a cycle is a problem, and so is a load
    input that depends on something that exists only once calls come (`late`)."""
    for start, location in places.items():
        chain = [start]
        node = start
        while node in edges:
            node = edges[node]
            if node in chain:
                problems.append(
                    document.problem(
                        location,
                        "refers to itself through "
                        + " -> ".join(f"{k}.inputs.{n}" for k, n in [*chain, node])
                        + ".",
                        "break the cycle: give one of these inputs a literal or another reference.",
                    )
                )
                break
            chain.append(node)
        else:
            if start[0] == "load" and any(step in late for step in chain):
                problems.append(
                    document.problem(
                        location,
                        "depends on a call argument or on load's own output, which do not "
                        "exist yet when load runs (once per worker, before any call).",
                        "use ${datapoints} and ${inputs.NAME} in predict's inputs only.",
                    )
                )


def _classify(
    document: YamlDocument,
    location: Location,
    kind: str,
    reference: Reference,
    files: Sequence[str],
    load: Entrypoint | None,
    load_outputs: set[str],
    known: list[str],
    problems: list[YamlProblem],
) -> tuple[str, Any] | None:
    """(kind, data) for one referenced input value, or None after filing a problem."""
    name = reference.name

    def problem(text: str, fix: str) -> None:
        problems.append(document.problem(location, text, fix))

    if reference.is_environment:
        if not _ENV_NAME.match(name):
            problem(
                f"{reference} is not a valid environment variable name.",
                "use letters, digits and '_'.",
            )
            return None
        return (ENV, name)
    argument = reference.argument
    if argument is not None:
        if kind != "predict":
            problem(
                f"{reference} is an argument of .run()/.push(), which load never gets: it "
                "runs once per worker, before any call.",
                "use it in predict's inputs; give load literals, files or env variables.",
            )
            return None
        if not _IDENTIFIER.match(argument) or argument.startswith("_"):
            problem(
                f"{reference}: {argument!r} is not a valid argument name.",
                "use a Python identifier, e.g. ${inputs.threshold}.",
            )
            return None
        return (ARGUMENT, argument)
    parts = name.split(".")
    if name in ("model.name", "model.runtime.device"):
        return (VARIABLE, name)
    if parts[:2] == ["model", "files"] and len(parts) == 4 and parts[3] == "url":
        if parts[2] not in files:
            close = difflib.get_close_matches(parts[2], list(files), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problem(
                f"{reference}: the model has no file named {parts[2]!r} "
                f"(it has {', '.join(map(repr, files)) or 'none'}).",
                f"{hint}add it under files:, or fix the name.",
            )
            return None
        return (VARIABLE, name)
    if parts[:4] == ["model", "runtime", "load", "output"] and len(parts) == 5:
        if kind != "predict":
            problem(
                f"{reference} is load's output, which does not exist while load runs.",
                "use it in predict's inputs.",
            )
            return None
        if load is None or load.output is None or parts[4] not in load_outputs:
            declared = ", ".join(map(repr, sorted(load_outputs)))
            what = f"it declares {declared}" if declared else "load has no output: section"
            problem(
                f"{reference}: load declares no output {parts[4]!r} ({what}).",
                "declare it under runtime.load.output (name: or keys:), or fix the name.",
            )
            return None
        return (VARIABLE, name)
    if parts[:2] == ["model", "runtime"] and len(parts) == 5 and parts[3] == "inputs":
        return (
            (VARIABLE, name)
            if _input_exists(parts[2], parts[4], location, reference, known, problem)
            else None
        )
    close = difflib.get_close_matches(str(reference), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    problem(f"{reference} is not a runtime variable.", f"{hint}Known: {', '.join(known)}.")
    return None


def _input_exists(
    function: str,
    name: str,
    location: Location,
    reference: Reference,
    known: list[str],
    problem: Any,
) -> bool:
    target = f"${{model.runtime.{function}.inputs.{name}}}"
    if target in known:
        return True
    close = difflib.get_close_matches(target, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    problem(f"{reference}: {function} has no input {name!r}.", f"{hint}Known: {', '.join(known)}.")
    return False
