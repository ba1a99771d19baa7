"""Reading an entrypoint's code without importing it: parameters, defaults, hints, docstrings."""

from __future__ import annotations

import collections.abc
import textwrap
import typing
from pathlib import Path

import pytest

import sieve_jupyter as sieve
from sieve_jupyter.modelyaml._code import UNKNOWN, EntrypointNotFound, read_entrypoint

MODULE = '''\
from __future__ import annotations
import collections.abc
import typing as t
from typing import Literal, Optional
import numpy as np
import sieve_jupyter as sieve
from sieve_jupyter import Image


def predict(model, datapoints: list[sieve.Image], threshold: float = 0.5, *,
            mode: Literal["fast", "best"] = "fast", k: t.Annotated[int, Field(ge=0)] = 3,
            array: np.ndarray = None, seq: collections.abc.Sequence[int] | None = None,
            cover: "Image | None" = None, **extra) -> "list[dict[str, Optional[float]]]":
    """Predict things.

    Args:
        datapoints: the images.
    """


if True:
    def guarded(x):
        pass

weights = object()
from os.path import join as joined
'''


@pytest.fixture
def code_root(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "yolor.py").write_text(MODULE)
    return tmp_path


def test_parameters_defaults_hints_and_docstring_are_read(code_root: Path) -> None:
    code = read_entrypoint(code_root, "models.yolor:predict")
    assert code.file == code_root / "models" / "yolor.py"
    assert code.parameters is not None
    params = {p.name: p for p in code.parameters}
    assert [p.kind for p in code.parameters] == [
        "POSITIONAL_OR_KEYWORD",
        "POSITIONAL_OR_KEYWORD",
        "POSITIONAL_OR_KEYWORD",
        "KEYWORD_ONLY",
        "KEYWORD_ONLY",
        "KEYWORD_ONLY",
        "KEYWORD_ONLY",
        "KEYWORD_ONLY",
        "VAR_KEYWORD",
    ]
    assert params["model"].annotation is UNKNOWN and not params["model"].has_default
    assert params["datapoints"].annotation == list[sieve.Image]
    assert params["threshold"].annotation is float and params["threshold"].default == 0.5
    assert params["mode"].annotation == typing.Literal["fast", "best"]
    assert params["k"].annotation is int  # Annotated's metadata is code: left out
    assert params["array"].annotation is UNKNOWN  # numpy is not a name hints may use
    assert params["seq"].annotation == collections.abc.Sequence[int] | None
    assert params["cover"].annotation == sieve.Image | None
    assert code.returns == list[dict[str, float | None]]
    assert code.doc.startswith("Predict things.")
    assert code.takes_any_keyword


def test_names_bound_otherwise_are_found_without_a_signature(code_root: Path) -> None:
    for name in ("guarded", "weights", "joined"):
        code = read_entrypoint(code_root, f"models.yolor:{name}")
        if name == "guarded":
            assert code.parameters is not None and code.parameters[0].name == "x"
        else:
            assert code.parameters is None


def test_hints_are_never_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(
        textwrap.dedent(f"""\
        def predict(x: __import__("pathlib").Path({str(marker)!r}).touch()):
            pass
        """)
    )
    code = read_entrypoint(tmp_path, "evil:predict")
    assert code.parameters is not None and code.parameters[0].annotation is UNKNOWN
    assert not marker.exists()


@pytest.mark.parametrize(
    ("entrypoint", "words"),
    [
        ("inference:predict", "module 'inference' is not in the code"),
        ("models.yolor:predcit", "defines no 'predcit'"),
        ("models.missing:predict", "module 'models.missing' is not in the code"),
    ],
)
def test_what_is_missing_is_named_with_a_fix(code_root: Path, entrypoint: str, words: str) -> None:
    with pytest.raises(EntrypointNotFound) as info:
        read_entrypoint(code_root, entrypoint)
    problem, fix = info.value.args
    assert words in problem and fix
    if "predcit" in entrypoint:
        assert "did you mean models.yolor:predict?" in fix


def test_a_module_that_does_not_parse_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def predict(:\n")
    with pytest.raises(EntrypointNotFound, match=r"broken.py does not parse \(line 1"):
        read_entrypoint(tmp_path, "broken:predict")


def test_an_async_entrypoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "aio.py").write_text("async def predict(x):\n    return x\n")
    with pytest.raises(EntrypointNotFound, match="async"):
        read_entrypoint(tmp_path, "aio:predict")


def test_an_installed_module_is_accepted_unread(tmp_path: Path) -> None:
    code = read_entrypoint(tmp_path, "json:loads")
    assert code.file is None and code.parameters is None
