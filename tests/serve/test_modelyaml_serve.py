"""`sieve-jupyter serve model.yaml`: the installed console script serves the models of a
model.yaml (one exported from a notebook, and a YOLOR-style one) on a free loopback port, with
the bundles' HTTP API; called over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _servers import ROOT, SCRIPT, Server, notebook

sys.path.insert(0, str(ROOT / "tests"))
from modelyaml_repos import make_repository, model_yaml  # noqa: E402

SECRET = "serve-s3cr3t-0b5c"

CELLS = [
    "import sieve_jupyter as sieve",
    "%load_ext sieve_jupyter",
    '''@sieve.function(name="multiplier")
def multiply(x1: int, x2: int) -> int:
    """Multiply two integers."""
    return x1 * x2''',
    """%%sieve_model --name greeter --env SERVE_GREETING
import os
class Greeter:
    def __setup__(self):
        print("setting up the greeter")
        self.greeting = os.environ["SERVE_GREETING"]
    def __predict__(self, name: str, times: int = 1) -> str:
        return " ".join([f"{self.greeting}, {name}"] * times)""",
    "multiply(2, 3)",
]


def script(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The notebook exported with `sieve-jupyter export --format model.yaml`."""
    work = tmp_path_factory.mktemp("served")
    notebook(CELLS, work / "greetings.ipynb")
    done = script(
        "export", "greetings.ipynb", "-o", "greetings", "--format", "model.yaml", cwd=work
    )
    assert done.returncode == 0, done.stderr
    assert "Exported multiplier, greeter as a model.yaml" in done.stdout
    return work / "greetings"


def test_the_console_script_serves_an_exported_model_yaml(exported: Path) -> None:
    assert SCRIPT.is_file()
    server = Server(
        exported / "model.yaml",
        "--workers",
        "2",
        env={"SERVE_GREETING": SECRET},
        command=[str(SCRIPT)],
    )
    try:
        health = server.health()
        assert set(health["functions"]) == {"multiplier", "greeter"}
        assert health["functions"]["greeter"]["workers"] == 2  # (READY once one is ready)
        answer = server.predict({"input": {"x1": 6, "x2": 7}})  # the first model: the default
        assert answer.status_code == 200 and answer.json()["output"] == 42
        greeted = server.predict(
            {"input": {"name": "Ada", "times": 2}}, "/functions/greeter/predictions"
        )
        assert greeted.json()["output"] == f"{SECRET}, Ada {SECRET}, Ada"
        wrong = server.predict(
            {"input": {"name": "Ada", "times": "twice"}}, "/functions/greeter/predictions"
        )
        assert wrong.status_code == 422
        assert wrong.json()["detail"][0]["loc"] == ["body", "input", "times"]
        schema = server.client.get("/openapi.json").json()
        assert "greeter" in str(schema["paths"])
    finally:
        assert server.stop() == 0
    assert "serving multiplier, greeter (default multiplier)" in server.output


def test_a_yolor_style_model_yaml_is_served_by_name_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = make_repository(tmp_path / "yolor")
    (repository.path / "model.yaml").write_text(
        model_yaml("YOLOR-P6") + model_yaml("other").replace("models:\n", "")
    )
    server = Server(
        repository.path,
        "--name",
        "YOLOR-P6",
        command=[str(SCRIPT)],
        env={"SIEVE_JUPYTER_CACHE_DIR": str(tmp_path / "cache")},
    )
    try:
        assert list(server.health()["functions"]) == ["YOLOR-P6"]
        answer = server.predict({"input": {"datapoints": [1.0, 0.25]}})
        assert answer.json()["output"] == [
            {"boxes": [3.0], "classes": [1], "scores": ["cpu"]},
            {"boxes": [0.75], "classes": [0], "scores": ["cpu"]},
        ]
        assert "loading params.txt" in server.health()["setup"]["logs"]
    finally:
        assert server.stop() == 0


def test_a_broken_model_yaml_is_refused_before_serving_with_its_line(tmp_path: Path) -> None:
    repository = make_repository(tmp_path / "yolor")
    path = repository.path / "model.yaml"
    path.write_text(model_yaml().replace("inference:predict", "inference:predikt"))
    done = script(
        "serve",
        str(path),
        "--port",
        "0",
        cwd=tmp_path,
        env={"SIEVE_JUPYTER_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 2
    assert "model.yaml:18:21: models[0].runtime.predict.entrypoint" in done.stderr
    assert "did you mean inference:predict?" in done.stderr
    assert "serving" not in done.stdout
    bundle_option = script("serve", str(tmp_path), "--name", "x", cwd=tmp_path)
    assert bundle_option.returncode == 2
    assert "--name applies to a model.yaml" in bundle_option.stderr
