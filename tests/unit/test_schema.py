"""JSON Schema from type hints: each feature widgets and the HTTP server rely on."""

from __future__ import annotations

import enum
import pathlib
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Annotated, Any, Literal, Optional, Union

import annotated_types
import numpy as np
import pytest
from pydantic import BaseModel, Field

import sieve_jupyter as sieve
from sieve_jupyter import SpecError
from sieve_jupyter.spec import FILE_FORMAT, parse_docstring, spec_from_callable, type_schema
from sieve_jupyter.spec._schema import inputs_schema, output_schema


def props(func: Callable[..., Any]) -> dict[str, Any]:
    return inputs_schema(func)["properties"]  # type: ignore[no-any-return]


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Box(BaseModel):
    x: int
    label: str = "box"


class Tree(BaseModel):
    value: int
    children: list[Tree] = []


class Opaque:
    """A class pydantic knows nothing about."""


def test_object_shape() -> None:
    def f(a: int, b: str = "x") -> None:
        pass

    schema = inputs_schema(f)
    assert schema["type"] == "object"
    assert list(schema["properties"]) == ["a", "b"]
    assert schema["required"] == ["a"]
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (str, {"type": "string"}),
        (bool, {"type": "boolean"}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (Any, {}),
    ],
)
def test_plain_types(annotation: Any, expected: dict[str, Any]) -> None:
    assert type_schema(annotation) == expected


def test_defaults() -> None:
    def f(n: int = 3, s: str = "hi", flag: bool = False, xs: list[int] = [1, 2]) -> None:  # noqa: B006
        pass

    p = props(f)
    assert p["n"]["default"] == 3
    assert p["s"]["default"] == "hi"
    assert p["flag"]["default"] is False
    assert p["xs"]["default"] == [1, 2]


def test_literal_choices() -> None:
    def f(mode: Literal["fast", "best"] = "fast", n: Literal[1, 2, 3] = 1) -> None:
        pass

    p = props(f)
    assert p["mode"]["enum"] == ["fast", "best"]
    assert p["mode"]["default"] == "fast"
    assert p["n"]["enum"] == [1, 2, 3]


def test_enum_choices_are_inlined() -> None:
    def f(color: Color = Color.GREEN, level: Level = Level.LOW) -> None:
        pass

    schema = inputs_schema(f)
    assert "$defs" not in schema
    assert schema["properties"]["color"]["enum"] == ["red", "green"]
    assert schema["properties"]["color"]["default"] == "green"
    assert schema["properties"]["level"]["enum"] == [1, 2]


def test_optional_is_any_of_null() -> None:
    def f(a: Optional[int] = None, b: str | None = None, c: Union[int, str] = 1) -> None:  # noqa: UP007, UP045
        pass

    p = props(f)
    assert p["a"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert p["a"]["default"] is None
    assert p["b"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert p["c"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]


def test_optional_enum_is_inlined() -> None:
    def f(color: Color | None = None) -> None:
        pass

    assert props(f)["color"]["anyOf"][0]["enum"] == ["red", "green"]


def test_annotated_constraints() -> None:
    def f(
        n: Annotated[int, Field(ge=0, le=10)] = 5,
        x: Annotated[float, annotated_types.Gt(0), annotated_types.Lt(1)] = 0.5,
        s: Annotated[str, Field(min_length=2, max_length=5, pattern="^[a-z]+$")] = "ab",
        xs: Annotated[list[int], annotated_types.Len(1, 3)] = [1],  # noqa: B006
    ) -> None:
        pass

    p = props(f)
    assert (p["n"]["minimum"], p["n"]["maximum"]) == (0, 10)
    assert (p["x"]["exclusiveMinimum"], p["x"]["exclusiveMaximum"]) == (0, 1)
    assert (p["s"]["minLength"], p["s"]["maxLength"], p["s"]["pattern"]) == (2, 5, "^[a-z]+$")
    assert (p["xs"]["minItems"], p["xs"]["maxItems"]) == (1, 3)


def test_field_as_default() -> None:
    def f(n: int = Field(3, ge=1, description="how many")) -> None:
        pass

    assert props(f)["n"] == {
        "default": 3,
        "minimum": 1,
        "description": "how many",
        "type": "integer",
    }


def test_rest_docstring_descriptions() -> None:
    def f(a: int, b: str) -> int:
        """Do things.

        :param a: the first
            thing.
        :param str b: the second
        :returns: a number
        """
        return 0

    p = props(f)
    assert p["a"]["description"] == "the first thing."
    assert p["b"]["description"] == "the second"
    assert output_schema(f)["description"] == "a number"


def test_google_docstring_descriptions() -> None:
    def f(a: int, b: str) -> int:
        """Do things.

        Args:
            a (int): the first
                thing.
            b: the second

        Returns:
            int: a number
        """
        return 0

    p = props(f)
    assert p["a"]["description"] == "the first thing."
    assert p["b"]["description"] == "the second"
    assert output_schema(f)["description"] == "a number"


def test_numpy_docstring_descriptions() -> None:
    params, returns = parse_docstring(
        """Do things.

        Parameters
        ----------
        a : int
            The first.
        b
            The second
            line.

        Returns
        -------
        int
            The sum.
        """
    )
    assert params == {"a": "The first.", "b": "The second line."}
    assert returns == "The sum."


def test_annotated_description_wins_over_docstring() -> None:
    def f(a: Annotated[int, Field(description="from the type")]) -> None:
        """:param a: from the docstring"""

    assert props(f)["a"]["description"] == "from the type"


def test_unannotated_parameter_is_any() -> None:
    def f(a, b=2):  # type: ignore[no-untyped-def]
        pass

    p = props(f)
    assert p["a"] == {}
    assert p["b"] == {"default": 2}
    assert output_schema(f) == {}


@pytest.mark.parametrize(
    ("cls", "media"),
    [
        (sieve.File, None),
        (sieve.Image, "image/*"),
        (sieve.Video, "video/*"),
        (sieve.Audio, "audio/*"),
    ],
)
def test_files_are_strings_with_a_file_format(cls: type, media: str | None) -> None:
    schema = type_schema(cls)
    assert schema["type"] == "string"
    assert schema["format"] == FILE_FORMAT
    assert schema["x-sieve-type"] == cls.__name__
    assert schema.get("contentMediaType") == media


def test_path_is_a_file() -> None:
    assert type_schema(pathlib.Path) == {
        "type": "string",
        "format": FILE_FORMAT,
        "x-sieve-type": "Path",
    }


def test_files_nested() -> None:
    def f(frames: list[sieve.Image], maybe: sieve.File | None = None) -> list[sieve.Video]:
        return []

    p = props(f)
    assert p["frames"]["items"]["x-sieve-type"] == "Image"
    assert p["maybe"]["anyOf"][0]["format"] == FILE_FORMAT
    assert output_schema(f)["items"]["x-sieve-type"] == "Video"


def test_types_pydantic_cannot_describe_do_not_fail() -> None:
    def f(
        arr: np.ndarray, thing: Opaque, fn: Callable[[int], int], arrs: list[np.ndarray]
    ) -> np.ndarray:
        return arr

    p = props(f)
    assert p["arr"] == {"x-python-type": "numpy.ndarray"}
    assert p["thing"]["x-python-type"].endswith("Opaque")
    assert "x-python-type" in p["fn"]
    assert p["arrs"]["items"] == {"x-python-type": "numpy.ndarray"}
    assert output_schema(f) == {"x-python-type": "numpy.ndarray"}


def test_non_json_default_is_left_out() -> None:
    def f(arr: np.ndarray = np.zeros(2), thing: Opaque = Opaque()) -> None:  # noqa: B008
        pass

    schema = inputs_schema(f)
    assert "default" not in schema["properties"]["arr"]
    assert schema["required"] == []


def test_unresolvable_annotation_does_not_fail() -> None:
    def f(a: NotDefinedAnywhere, b: int) -> AlsoMissing:  # type: ignore[name-defined]  # noqa: F821
        pass

    p = props(f)
    assert p["a"] == {"x-python-type": "NotDefinedAnywhere"}
    assert p["b"] == {"type": "integer"}
    assert output_schema(f) == {"x-python-type": "AlsoMissing"}


def test_pydantic_models_are_inlined() -> None:
    def f(box: Box) -> Box:
        return box

    p = props(f)
    assert p["box"]["type"] == "object"
    assert p["box"]["properties"]["x"] == {"title": "X", "type": "integer"}
    assert output_schema(f)["required"] == ["x"]


def test_recursive_models_keep_defs() -> None:
    def f(tree: Tree) -> None:
        pass

    schema = inputs_schema(f)
    assert "$defs" in schema and "Tree" in schema["$defs"]
    assert schema["properties"]["tree"]["properties"]["children"]["items"] == {
        "$ref": "#/$defs/Tree"
    }


def test_names_that_clash_with_pydantic_attributes() -> None:
    def f(json: str, model_config: int, schema: int = 1, _private: int = 2) -> None:
        pass

    assert list(props(f)) == ["json", "model_config", "schema", "_private"]


def test_var_args_and_kwargs() -> None:
    def f(a: int, *rest: str, **options: float) -> None:
        pass

    schema = inputs_schema(f)
    assert list(schema["properties"]) == ["a"]
    assert schema["x-var-positional"] == {"name": "rest", "items": {"type": "string"}}
    assert schema["additionalProperties"] == {"type": "number"}

    def g(**kwargs):  # type: ignore[no-untyped-def]
        pass

    assert inputs_schema(g)["additionalProperties"] is True


def test_positional_only_is_listed() -> None:
    def f(a: int, /, b: int) -> None:
        pass

    schema = inputs_schema(f)
    assert schema["x-positional-only"] == ["a"]
    assert schema["required"] == ["a", "b"]


def test_webhooks_input_is_reserved() -> None:
    def f(webhooks: str) -> None:
        pass

    with pytest.raises(SpecError) as info:
        inputs_schema(f)
    assert "webhooks" in info.value.field


@pytest.mark.parametrize(
    "annotation",
    [Iterator[int], Generator[int, None, None], AsyncIterator[int]],
)
def test_generator_output_is_the_item(annotation: Any) -> None:
    def f() -> None:
        pass

    f.__annotations__["return"] = annotation
    assert output_schema(f, is_generator=True) == {"type": "integer"}


def test_none_output() -> None:
    def f() -> None:
        pass

    assert output_schema(f) == {"type": "null"}


def test_model_docstrings_from_class_and_predict() -> None:
    class M:
        """A model.

        Args:
            a: from the class
            b: also from the class
        """

        def __predict__(self, a: int, b: int) -> int:
            """:param b: from predict"""
            return a + b

    p = spec_from_callable(M, kind="model", name="m").inputs["properties"]
    assert p["a"]["description"] == "from the class"
    assert p["b"]["description"] == "from predict"


def test_signature_text_is_readable() -> None:
    def f(
        video: sieve.Video, mode: Literal["a", "b"] = "a", n: int | None = None
    ) -> list[sieve.File]:
        return []

    spec = spec_from_callable(f, kind="function", name="f")
    assert (
        spec.signature
        == "(video: sieve.Video, mode: Literal['a', 'b'] = 'a', n: int | None = None) "
        "-> list[sieve.File]"
    )


NOTEBOOK_CELL = """
import enum
from collections.abc import Iterator
from typing import Annotated, Literal, Optional

import annotated_types as at
import numpy as np
from pydantic import Field

import sieve_jupyter as sieve


class Color(enum.Enum):
    RED = "red"


def detect(
    video: sieve.Video,
    n: Annotated[int, Field(ge=0, le=10, description="how many")] = 3,
    x: Annotated[float, at.Gt(0)] = 1.0,
    color: Color = Color.RED,
    mode: Literal["a", "b"] = "a",
    limit: Optional[int] = None,
    arr: np.ndarray = None,
    later: "NotYetDefined" = None,
) -> Iterator[list[sieve.File]]:
    yield []
"""


def test_annotations_as_a_notebook_cell_writes_them() -> None:
    # notebook cells do not use `from __future__ import annotations`: hints are real objects
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(NOTEBOOK_CELL, "<cell>", "exec", dont_inherit=True), namespace)
    spec = spec_from_callable(namespace["detect"], kind="function", name="detect")
    p = spec.inputs["properties"]
    assert p["video"]["x-sieve-type"] == "Video"
    assert (p["n"]["minimum"], p["n"]["maximum"], p["n"]["description"]) == (0, 10, "how many")
    assert p["x"]["exclusiveMinimum"] == 0
    assert p["color"]["enum"] == ["red"]
    assert p["mode"]["enum"] == ["a", "b"]
    assert p["limit"]["anyOf"][1] == {"type": "null"}
    assert p["arr"]["x-python-type"] == "numpy.ndarray"
    assert p["later"]["x-python-type"] == "NotYetDefined"
    assert spec.output["items"]["x-sieve-type"] == "File"
    assert spec.signature == (
        "(video: sieve.Video, n: Annotated[int, Field(ge=0, le=10, description='how many')] = 3, "
        "x: Annotated[float, Gt(gt=0)] = 1.0, color: Color = <Color.RED: 'red'>, "
        "mode: Literal['a', 'b'] = 'a', limit: int | None = None, arr: ndarray = None, "
        "later: NotYetDefined = None) -> Iterator[list[sieve.File]]"
    )


# -- checking values against the schema (the server's inputs, and the client's before it sends)


def test_schema_check_names_the_place_and_the_rule() -> None:
    from sieve_jupyter.spec._schema_check import SchemaCheck

    def f(x: int, tags: list[str], pair: tuple[int, str] = (0, "")) -> None: ...

    plain = SchemaCheck(inputs_schema(lambda x, tags: None))  # no hints: anything goes
    assert plain.problems({"x": object(), "tags": 1}) == []
    check = SchemaCheck(inputs_schema(f))
    assert check.problems({"x": 1, "tags": ["a"], "pair": [2, "b"]}) == []
    (problem,) = check.problems({"x": 1, "tags": ["a", 2]})
    assert (problem.path, problem.rule) == (("tags", 1), "type")
    assert "2 is not of type 'string'" in problem.message
    (problem,) = check.problems({"tags": []})
    assert (problem.path, problem.rule) == (("x",), "required")
    (problem,) = check.problems({"x": 1, "tags": [], "other": 3})
    assert (problem.path, problem.rule) == (("other",), "additionalProperties")
    # a tuple's items are `prefixItems` (draft 2020-12): checked by jsonschema, the same way
    (problem,) = check.problems({"x": 1, "tags": [], "pair": [2, 3]})
    assert (problem.path, problem.rule) == (("pair", 1), "type")


def test_schema_check_if_available_is_none_without_the_library_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from sieve_jupyter.spec import _schema_check

    def f(x: int, pair: tuple[int, str]) -> None: ...

    simple, newer = inputs_schema(lambda x: None), inputs_schema(f)
    assert _schema_check.SchemaCheck.if_available(simple) is not None
    assert _schema_check.SchemaCheck.if_available(newer) is not None
    real = importlib.util.find_spec
    monkeypatch.setattr(
        _schema_check.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "jsonschema" else real(name, *a),
    )
    assert _schema_check.SchemaCheck.if_available(simple) is not None  # (fastjsonschema)
    assert _schema_check.SchemaCheck.if_available(newer) is None
