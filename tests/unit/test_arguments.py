"""Arguments are checked against the hints in the caller, with Sieve's lax coercions."""

from __future__ import annotations

import pathlib
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

import sieve_jupyter as sieve
from sieve_jupyter.spec import ArgumentChecker


def blur(img: sieve.File, k: int = 3, *, mode: Literal["fast", "exact"] = "fast") -> int:
    return k


def untyped(a, b: Any, c: int, *rest: int, **extra: str) -> None:  # type: ignore[no-untyped-def]
    pass


def mixed(
    frames: list[sieve.Image],
    scale: float,
    mask: sieve.File | None = None,
    where: pathlib.Path | None = None,
    strength: Annotated[float, Field(ge=0, le=1)] = 0.5,
) -> None:
    pass


class Detector:
    def __predict__(self, image: sieve.Image, threshold: float = 0.5) -> dict[str, Any]:
        return {}


def check(func: Any, *args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return ArgumentChecker(func.__name__, func).check(args, kwargs)


def test_values_of_the_declared_types_pass_unchanged() -> None:
    image = sieve.File("a.png")
    args, kwargs = check(blur, image, 5, mode="exact")
    assert args[0] is image and args[1] == 5 and kwargs == {"mode": "exact"}


def test_a_path_string_becomes_a_file_and_an_int_a_float() -> None:
    args, _ = check(blur, "street.png")
    assert isinstance(args[0], sieve.File) and args[0].path == "street.png"
    args, kwargs = check(mixed, ["a.png", sieve.Image("b.png")], 2, mask=pathlib.Path("m.png"))
    assert [type(f) for f in args[0]] == [sieve.Image, sieve.Image]
    assert args[1] == 2.0 and type(args[1]) is float
    assert isinstance(kwargs["mask"], sieve.File)
    args, _ = ArgumentChecker("detector", Detector.__predict__, drop_first=True).check(
        ("street.png", 1), {}
    )
    assert isinstance(args[0], sieve.Image) and args[1] == 1.0


@pytest.mark.parametrize(
    ("call", "field", "given", "expected"),
    [
        (lambda: check(blur, 123), "img", "int 123", "a sieve.File (or a path or URL string)"),
        (lambda: check(blur, "x.png", k="three"), "k", "str 'three'", "int"),
        (lambda: check(blur, "x.png", mode="slow"), "mode", "str 'slow'", "'fast' | 'exact'"),
        (lambda: check(mixed, ["a.png", 7], 1.0), "frames[1]", "int 7", "list[sieve.Image]"),
        (lambda: check(mixed, [], "big"), "scale", "str 'big'", "float"),
        (lambda: check(mixed, [], 1.0, strength=2.0), "strength", "float 2.0", "float"),
        (lambda: check(untyped, 1, 2, "c"), "c", "str 'c'", "int"),
    ],
)
def test_a_value_that_cannot_be_the_type_names_the_parameter_the_value_and_the_type(
    call: Any, field: str, given: str, expected: str
) -> None:
    with pytest.raises(sieve.InputError) as info:
        call()
    error = info.value
    assert error.field == field
    assert f"expected {expected}, got {given}" in error.problem
    assert f"pass {expected}" in error.fix


def test_parameters_without_hints_any_star_args_and_kwargs_are_not_checked() -> None:
    marker = object()
    args, kwargs = check(untyped, marker, marker, 1, "not an int", x=3)
    assert args == (marker, marker, 1, "not an int") and kwargs == {"x": 3}


def test_a_call_that_does_not_fit_the_signature_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"blur\(img: .*missing a required argument: 'img'"):
        check(blur)
    with pytest.raises(TypeError, match="unexpected keyword argument 'size'"):
        check(blur, "x.png", size=3)


def test_the_same_call_shape_is_bound_once() -> None:
    checker = ArgumentChecker("blur", blur)
    for k in range(3):
        checker.check(("x.png", k), {})
    checker.check(("x.png",), {"k": 1})
    assert len(checker._shapes) == 2
