"""A model and a function exported to a model.yaml, loaded back and run on real workers (each
backend): called the same way, they answer as the originals did, with the same schemas, and a
declared secret reaches the worker without entering any exported file."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from support import Unique

import sieve_jupyter as sieve

SECRET = "roundtrip-s3cr3t-6d1e"

SOURCE = '''\
"""Models defined in a plain module, as a script or package would."""
import os

import sieve_jupyter as sieve


@sieve.function(name={double!r})
def double(x: int) -> int:
    """Twice x."""
    return 2 * x


@sieve.Model(name={adder!r},
             environment_variables=[sieve.Env(name="ROUNDTRIP_GREETING")])
class Adder:
    """Adds, and asks another function for help."""

    def __setup__(self):
        print("setting up the adder")
        self.offset = 100
        self.greeting = os.environ["ROUNDTRIP_GREETING"]

    def __predict__(self, x: int, y: int = 2) -> dict:
        """Args:
            x: the first number
            y: the second
        """
        return {{"sum": x + y + self.offset, "doubled": double.run(x),
                 "greeting": self.greeting}}
'''


@pytest.fixture
def module(tmp_path: Path, unique: Unique, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The models' module, imported from a file (as `sieve.export` finds their source)."""
    name = unique("roundtrip").replace("-", "_")
    (tmp_path / f"{name}.py").write_text(
        SOURCE.format(double=unique("double"), adder=unique("adder"))
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ROUNDTRIP_GREETING", SECRET)
    try:
        yield importlib.import_module(name)
    finally:
        sys.modules.pop(name, None)


def test_an_exported_model_and_function_answer_as_the_originals(
    module: ModuleType, backend: str, tmp_path: Path
) -> None:
    adder, double = module.Adder, module.double
    expected = adder.run(x=5)
    assert expected == {"sum": 107, "doubled": 10, "greeting": SECRET}
    expected_push = adder.push(7, y=1).result(timeout=60)
    doubled = double.run(x=5)
    originals = {h.name: h.spec for h in (adder, double)}

    result = sieve.export(adder, tmp_path / "out", format="model.yaml")
    assert [f.name for f in result.functions] == [adder.name, double.name]  # what it calls too
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(), path

    # (loading replaces the originals' registrations: they have the same names)
    models = sieve.load_yaml(tmp_path / "out" / "model.yaml", backend=backend)
    assert list(models) == [adder.name, double.name]
    loaded_adder, loaded_double = models[adder.name], models[double.name]
    assert loaded_adder.run(x=5) == expected
    future = loaded_adder.push(7, y=1)
    assert future.result(timeout=900) == expected_push
    assert loaded_double.run(x=5) == doubled == 10
    assert loaded_double.run(21) == 42
    for name, handle in models.items():
        assert handle.spec.inputs == originals[name].inputs
        assert handle.spec.output == originals[name].output
        assert handle.spec.doc == originals[name].doc
    assert [e.name for e in loaded_adder.spec.env] == ["ROUNDTRIP_GREETING"]
    with pytest.raises(TypeError, match="z"):
        loaded_adder.run(x=1, z=2)  # called the same way: unknown arguments are refused
