"""A handle as a worker sees it (`RemoteFunction`): `run` / `push` chain through the manager,
and a plain call runs the code it carries, as calling the handle does in the notebook."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cloudpickle
import pytest

import sieve_jupyter as sieve
from sieve_jupyter.runtime import RemoteFunction
from sieve_jupyter.runtime._exported import exported


def test_a_plain_call_runs_the_code_it_carries() -> None:
    class Scale:
        def __setup__(self) -> None:
            self.factor = 10

        def __predict__(self, x: int) -> int:
            return self.factor * x

    double = RemoteFunction("double", lambda x: 2 * x)
    assert double(4) == 8
    scale = RemoteFunction("scale", Scale, model=True)
    assert scale().__predict__(2) == 20  # an instance whose __setup__ ran
    again = cloudpickle.loads(cloudpickle.dumps(double))
    assert again(5) == 10 and again.name == "double"


def test_without_code_a_plain_call_says_to_run_or_push() -> None:
    with pytest.raises(TypeError, match=r"cannot be called directly\. Fix: \.run\(\.\.\.\)"):
        RemoteFunction("by-name")(1)


def test_a_handle_travels_with_the_code_that_names_it(unique: Callable[[str], str]) -> None:
    from sieve_jupyter.sdk._payload import dumps

    @sieve.function(name=unique("double"))
    def double(x: int) -> int:
        return 2 * x

    def quad(x: int) -> int:
        return double(double(x))

    # (this module is the user's, pickled by value as a notebook's code is)
    assert cloudpickle.loads(dumps(quad))(3) == 12
    # where the handle's code does not travel, the proxy still chains, and says so if called
    alone = cloudpickle.loads(cloudpickle.dumps(double))
    assert isinstance(alone, RemoteFunction) and alone.name == double.name
    with pytest.raises(TypeError, match="cannot be called directly"):
        alone(1)


def test_an_exported_module_s_handles_stay_callable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path
    (folder / "captured_mod.py").write_text(
        "import sieve_jupyter as sieve\n\n"
        "@sieve.function(name='captured-fact')\n"
        "def fact(n: int) -> int:\n"
        "    return 1 if n <= 1 else n * fact(n - 1)\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    fact = exported("captured_mod", "fact")
    assert fact(5) == 120  # itself, through the module's RemoteFunction
