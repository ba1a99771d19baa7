"""The JSON form of values (`runtime._json.to_json`): a served function's results, and the
inputs the HTTP client sends."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import pathlib
import uuid

import numpy as np
import pytest
from pydantic import BaseModel

import sieve_jupyter as sieve
from sieve_jupyter.runtime._json import to_json


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    when: datetime.date


class Box(BaseModel):
    corner: tuple[int, int]
    label: str


def test_values_become_what_json_and_the_other_side_s_hints_read() -> None:
    moment = datetime.datetime(2026, 12, 6, 10, 30, tzinfo=datetime.timezone.utc)
    ident = uuid.UUID(int=7)
    value = {
        "plain": [1, "a", True, None, 2.5],
        "when": moment,
        "day": moment.date(),
        "at": moment.time(),
        "id": ident,
        "price": decimal.Decimal("1.10"),
        "color": Color.RED,
        "tags": {"only"},
        "pair": (1, 2),
        "point": Point(3, moment.date()),
        "box": Box(corner=(0, 1), label="b"),
        "array": np.arange(4).reshape(2, 2),
        "scalar": np.float32(0.5),
        "blob": b"\x00\x01",
        3: "keys become text",
    }
    assert to_json(value) == {
        "plain": [1, "a", True, None, 2.5],
        "when": "2026-12-06T10:30:00+00:00",
        "day": "2026-12-06",
        "at": "10:30:00",
        "id": str(ident),
        "price": "1.10",
        "color": "red",
        "tags": ["only"],
        "pair": [1, 2],
        "point": {"x": 3, "when": "2026-12-06"},
        "box": {"corner": [0, 1], "label": "b"},
        "array": [[0, 1], [2, 3]],
        "scalar": 0.5,
        "blob": "data:application/octet-stream;base64,AAE=",
        "3": "keys become text",
    }
    assert to_json(math.nan) is None and to_json([math.inf]) == [None]


def test_files_are_the_caller_s_to_write() -> None:
    file = sieve.File("/tmp/in.bin")
    kept = to_json({"f": file, "p": pathlib.Path("/tmp/out.bin")})
    assert kept["f"] is file and isinstance(kept["p"], sieve.File)
    assert kept["p"].path == "/tmp/out.bin"
    assert to_json([file, pathlib.Path("/x")], lambda f: f"file:{f.path}") == [
        "file:/tmp/in.bin",
        "file:/x",
    ]


def test_a_value_without_a_json_form_names_its_type() -> None:
    with pytest.raises(TypeError, match=r"builtins\.object has no JSON form\. Fix: "):
        to_json({"x": [object()]})
