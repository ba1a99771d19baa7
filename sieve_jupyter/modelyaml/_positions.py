"""Read a YAML document keeping where every key and value is, so errors can say FILE:LINE:COL.

PyYAML's composer gives a node tree whose nodes carry their start marks; the same tree is then
constructed into plain Python data. A location is a key path as pydantic reports it, e.g.
``("models", 0, "runtime", "load", "entrypoint")``, shown as
``models[0].runtime.load.entrypoint``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from sieve_jupyter._errors import ModelYamlError, YamlProblem

__all__ = ["Location", "YamlDocument", "format_location", "parse_yaml"]

Location = tuple[str | int, ...]


def format_location(location: Sequence[str | int]) -> str:
    """``("models", 0, "name")`` -> ``"models[0].name"``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass
class YamlDocument:
    """A parsed document: its data, and the line and column of each of its parts.

    Attributes:
        file: the file's name as shown in messages.
        data: the constructed document (dicts, lists, scalars).
    """

    file: str
    data: Any
    _values: dict[Location, tuple[int, int]] = field(default_factory=dict)
    _keys: dict[Location, tuple[int, int]] = field(default_factory=dict)

    def with_data(self, data: Any) -> YamlDocument:
        """The same document (positions included) holding `data`, e.g. with variables
        substituted."""
        return YamlDocument(self.file, data, self._values, self._keys)

    def position(self, location: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """(line, column), 1-based, of the value at `location` (of its key when `key`); a part
        that is absent (a missing key) falls back to the nearest enclosing one."""
        loc = tuple(location)
        while True:
            if key and loc in self._keys:
                return self._keys[loc]
            if loc in self._values:
                return self._values[loc]
            if not loc:
                return (1, 1)
            loc = loc[:-1]
            key = False

    def problem(
        self, location: Sequence[str | int], problem: str, fix: str = "", *, key: bool = False
    ) -> YamlProblem:
        """A `YamlProblem` at `location` of this document."""
        line, column = self.position(location, key=key)
        return YamlProblem(self.file, line, column, format_location(location), problem, fix)

    def error(
        self, location: Sequence[str | int], problem: str, fix: str = "", *, key: bool = False
    ) -> ModelYamlError:
        """A `ModelYamlError` with one problem at `location`."""
        return ModelYamlError([self.problem(location, problem, fix, key=key)])


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse one YAML document, keeping positions.

    Raises:
        ModelYamlError: the text is not YAML (at the parser's position), holds several
            documents, or repeats a key in one mapping.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ModelYamlError(
            [
                YamlProblem(
                    file,
                    line,
                    column,
                    "",
                    f"is not valid YAML: {problem}.",
                    "fix the syntax at that position (indentation, a missing ':' or quote).",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise ModelYamlError(
            [YamlProblem(file, 1, 1, "", f"is not valid YAML: {exc}.", "fix the syntax.")]
        ) from None
    finally:
        loader.dispose()
    document = YamlDocument(file, data)
    problems: list[YamlProblem] = []
    if node is not None:
        _walk(node, (), document, problems)
    if problems:
        raise ModelYamlError(problems)
    return document


def _walk(
    node: yaml.Node, location: Location, document: YamlDocument, problems: list[YamlProblem]
) -> None:
    document._values[location] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key == "<<":  # a merge key: its entries have no place of their own
                continue
            child = (*location, key)
            if key in seen:
                line, column = _mark(key_node)
                problems.append(
                    YamlProblem(
                        document.file,
                        line,
                        column,
                        format_location(child),
                        f"is given twice (first on line {seen[key][0]}); YAML would silently "
                        "keep only the last one.",
                        "remove one of them.",
                    )
                )
                continue
            seen[key] = _mark(key_node)
            document._keys[child] = _mark(key_node)
            _walk(value_node, child, document, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*location, index), document, problems)
