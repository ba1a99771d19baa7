"""Handles are typed by what they wrap: a type checker (mypy, strict) sees the results' types
and refuses wrong arguments, as it would for the plain functions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE = textwrap.dedent(
    """
    import sieve_jupyter as sieve

    @sieve.function(name="multiplier")
    def multiply(x1: int, x2: int) -> int:
        return x1 * x2

    @sieve.function
    def shout(text: str, *, times: int = 1) -> str:
        return text.upper() * times

    class AdderClass:
        def __setup__(self) -> None:
            self.offset = 0

        def __predict__(self, x1: int, x2: float = 0.0) -> float:
            return x1 + x2 + self.offset

    Adder = sieve.Model(name="adder")(AdderClass)
    other = sieve.function.get("alice/other")

    reveal_type(multiply)
    reveal_type(multiply.run(2, 3))
    reveal_type(multiply.push(2, 3))
    reveal_type(multiply.push(2, 3).result())
    reveal_type(multiply(2, 3))
    reveal_type(shout.run("hey", times=2))
    reveal_type(Adder.run(1, 2.5))
    reveal_type(Adder.push(1))
    reveal_type(list(multiply.map([1, 2], [3, 4])))
    reveal_type(other.run(1, "anything"))

    multiply.run("two", 3)
    shout.run("hey", 2)
    Adder.run()
    """
)

EXPECTED_TYPES = [
    "sieve_jupyter.sdk._handles.FunctionHandle[[x1: int, x2: int], int]",
    "int",
    "sieve_jupyter.manager._jobs.JobFuture[int]",
    "int",
    "int",
    "str",
    "float",
    "sieve_jupyter.manager._jobs.JobFuture[float]",
    "list[int]",
    "Any",
]


@pytest.mark.skipif(shutil.which("mypy") is None, reason="mypy is in the dev extra")
def test_handles_carry_the_types_of_what_they_wrap(tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(EXAMPLE)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(example),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )
    lines = result.stdout.splitlines()
    revealed = [m.group(1) for line in lines if (m := re.search(r'Revealed type is "(.*)"', line))]
    assert revealed == EXPECTED_TYPES, result.stdout
    errors = [line for line in lines if ": error:" in line]
    # exactly the three wrong calls, each refused
    assert len(errors) == 3, result.stdout
    assert '"run" of "FunctionHandle" has incompatible type "str"' in errors[0]
    assert "Too many positional arguments" in errors[1]
    assert "Missing positional argument" in errors[2]
