"""Export to a model.yaml: the files written (model.yaml, the captured module, the generated
entrypoints), how they load back (signature, schemas, docstrings), what is refused with the
parameter and the fix, what the format cannot carry, and that secrets stay out."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest
import yaml

from sieve_jupyter import ExportError, SpecError
from sieve_jupyter.bundle import Cell, export_cells
from sieve_jupyter.modelyaml import resolve_yaml
from sieve_jupyter.modelyaml._adapter import model_class, model_spec

HEADER = "import typing\nfrom typing import Optional\nimport sieve_jupyter as sieve\n"

MODEL = '''\
LIMIT = 7

@sieve.Model(name="adder", environment_variables=[sieve.Env(name="GREETING")])
class Adder:
    """Adds numbers."""
    def __setup__(self):
        self.offset = 100
    def __predict__(self, x: int, y: int = 2, *, scale: float = 1.0,
                    note: Optional[str] = None, lim: int = LIMIT) -> float:
        """Add them.

        Args:
            x: the first
            y: the second
        """
        return (x + y + self.offset) * scale
'''

FUNCTION = """\
@sieve.function(name="multiplier")
def multiply(a: int, b: typing.List[int]) -> int:
    return a * sum(b)
"""


def cells(*sources: str) -> list[Cell]:
    return [
        Cell(number, textwrap.dedent(source)) for number, source in enumerate([HEADER, *sources], 1)
    ]


def export(tmp_path: Path, *sources: str, **options: object) -> object:
    return export_cells(
        cells(*sources), tmp_path / "out", format="model.yaml", cwd=tmp_path, **options
    )  # type: ignore[arg-type]


def written(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "out"
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_a_model_and_a_function_become_a_model_yaml_and_its_code(tmp_path: Path) -> None:
    result = export(tmp_path, MODEL, FUNCTION)
    files = written(tmp_path)
    assert set(files) == {"model.yaml", "src/main.py", "src/sieve_entrypoints.py"}
    assert result.files == {k: v.encode() for k, v in files.items()}  # type: ignore[attr-defined]
    document = yaml.safe_load(files["model.yaml"])
    adder, multiplier = document["models"]
    assert adder["name"] == "adder" and adder["repository"] == {"url": "src"}
    runtime = adder["runtime"]
    assert runtime["load"] == {
        "entrypoint": "sieve_entrypoints:load_Adder",
        "inputs": [{"name": "GREETING", "value": "${GREETING}"}],
        "output": {"name": "model"},
    }
    assert runtime["predict"]["entrypoint"] == "sieve_entrypoints:predict_Adder"
    assert runtime["predict"]["inputs"] == [
        {"name": "model", "value": "${model.runtime.load.output.model}"},
        *({"name": n, "value": f"${{inputs.{n}}}"} for n in ("x", "y", "scale", "note", "lim")),
    ]
    assert "device" not in runtime and "image" not in runtime
    assert multiplier["runtime"]["predict"]["inputs"][1:] == [
        {"name": "a", "value": "${inputs.a}"},
        {"name": "b", "value": "${inputs.b}"},
    ]
    # the generated predict has the original parameters, hints and docstring; a constant's
    # default became its value (a form shows only literals)
    entry = files["src/sieve_entrypoints.py"]
    tree = ast.parse(entry)
    predict = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "predict_Adder"
    )
    assert ast.unparse(predict.args) == (
        "model, x: int, y: int=2, *, scale: float=1.0, note: Optional[str]=None, lim: int=7"
    )
    assert ast.unparse(predict.returns) == "float"  # type: ignore[arg-type]
    assert ast.get_docstring(predict) == (
        "Adds numbers.\n\nAdd them.\n\nArgs:\n    x: the first\n    y: the second"
    )
    assert "from typing import Optional" in entry and "import typing" in entry
    assert files["src/main.py"] == result.capture.source  # type: ignore[attr-defined]
    assert "Note:" not in str(result)


def test_the_written_file_loads_back_with_the_originals_schemas(tmp_path: Path) -> None:
    result = export(tmp_path, MODEL, FUNCTION)
    originals = {f.name: f.spec for f in result.functions}  # type: ignore[attr-defined]
    models = resolve_yaml(tmp_path / "out" / "model.yaml", environ={"GREETING": "-"})
    assert [m.name for m in models] == ["adder", "multiplier"]
    for model in models:
        spec = model_spec(model, model_class(model))
        original = originals[model.name]
        assert spec.inputs == original.inputs
        assert spec.output == original.output
        assert spec.doc == original.doc
        assert [e.name for e in spec.env] == [e.name for e in original.env]
    assert models[0].root == (tmp_path / "out" / "src").resolve() and models[0].in_place


def test_exporting_twice_gives_identical_files_and_replaces_the_export(tmp_path: Path) -> None:
    first = export(tmp_path, FUNCTION)
    (tmp_path / "out" / "stale.txt").write_text("from before")
    second = export(tmp_path, FUNCTION)
    assert first.files == second.files  # type: ignore[attr-defined]
    assert not (tmp_path / "out" / "stale.txt").exists()


def test_a_folder_that_is_not_an_export_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.yaml").write_text("models: []  # the user's own\n")
    with pytest.raises(FileExistsError, match="not a model.yaml export.*sieve_entrypoints"):
        export(tmp_path, FUNCTION)
    assert (tmp_path / "out" / "model.yaml").read_text() == "models: []  # the user's own\n"


def test_env_names_appear_and_their_values_never_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-greeting-never-written"
    monkeypatch.setenv("GREETING", secret)
    result = export(tmp_path, MODEL)
    files = written(tmp_path)
    assert "${GREETING}" in files["model.yaml"]
    assert all(secret not in text for text in files.values())
    assert secret not in str(result)


@pytest.mark.parametrize(
    ("source", "names"),
    [
        (
            "def __predict__(self, *images: int) -> int:",
            ["*images", "by name", "Fix: take them as one list parameter", "images: list[...]"],
        ),
        (
            "def __predict__(self, x: int, /, y: int = 2) -> int:",
            ["parameter 'x' is positional-only", "${inputs.x}", "Fix: remove the `/`"],
        ),
        (
            "def __predict__(self, x: int, **options: int) -> int:",
            ["**options", "Fix: name each argument"],
        ),
        (
            "def __predict__(self, _x: int) -> int:",
            ["parameter '_x' starts with '_'", "Fix: rename it"],
        ),
        (
            "def __predict__(self, x: typing.Any = object()) -> int:",
            ["default of 'x' (`object()`) is not a literal", "Fix: give it a literal default"],
        ),
        (
            "def __predict__(self, x: int):\n        yield x",
            ["Bad.__predict__ yields", "Fix: return a list", "format='bundle'"],
        ),
        (
            "async def __predict__(self, x: int) -> int:",
            ["Bad.__predict__ is async", "Fix: make it a plain def"],
        ),
    ],
)
def test_what_a_model_yaml_cannot_call_by_name_is_refused_before_writing(
    tmp_path: Path, source: str, names: list[str]
) -> None:
    body = source if "\n" in source else f"{source}\n        return 0"
    model = f'@sieve.Model(name="bad")\nclass Bad:\n    {body}\n'
    with pytest.raises(ExportError) as caught:
        export(tmp_path, model)
    message = str(caught.value)
    assert message.startswith("cell 2: ")
    for name in names:
        assert name in message
    assert not (tmp_path / "out").exists()


def test_an_unknown_format_and_a_ca_bundle_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        export_cells(cells(FUNCTION), tmp_path / "out", format="yaml")
    assert caught.value.field == "format" and "model.yaml" in caught.value.fix
    with pytest.raises(SpecError) as caught:
        export(tmp_path, FUNCTION, ca_bundle=tmp_path / "ca.pem")
    assert caught.value.field == "ca_bundle"
    assert not (tmp_path / "out").exists()


def test_what_the_format_cannot_say_is_reported_not_dropped(tmp_path: Path) -> None:
    model = """\
    from dataclasses import dataclass

    @dataclass
    class Box:
        width: int

    @sieve.Model(name="packed", python_packages=["numpy"], system_packages=["ffmpeg"],
                 restart_on_error=False,
                 environment_variables=[sieve.Env(name="MODE", default="fast")])
    class Packed:
        def __predict__(self, box: Box, n: int = 1) -> int:
            return box.width * n
    """
    result = export(tmp_path, model, base_image="python:3.11-slim")
    notes = "\n".join(result.notes)  # type: ignore[attr-defined]
    assert "python_packages" in notes and "src/requirements.txt" in notes
    assert "system_packages (ffmpeg)" in notes
    assert "restart_on_error=False" in notes
    assert "MODE has a default" in notes and "fast" not in notes
    assert "argument 'box'" in notes and "takes JSON" in notes
    files = written(tmp_path)
    assert files["src/requirements.txt"] == "numpy\n"
    assert yaml.safe_load(files["model.yaml"])["models"][0]["runtime"]["image"] == (
        "python:3.11-slim"
    )
    # a hint the captured module defines is imported from it (so the code stays importable)
    assert "from main import Box" in files["src/sieve_entrypoints.py"]
    assert "Note: packed: python_packages" in str(result)


def test_a_gpu_request_becomes_device_and_gpu(tmp_path: Path) -> None:
    model = """\
    @sieve.Model(name="seer", gpu=sieve.gpu.L4(split=2))
    class Seer:
        def __predict__(self, x: int) -> int:
            return x
    """
    export(tmp_path, model)
    runtime = yaml.safe_load(written(tmp_path)["model.yaml"])["models"][0]["runtime"]
    assert runtime["device"] == "gpu" and runtime["gpu"] == {"kind": "L4", "split": 2}
