"""`sieve-jupyter check model.yaml` and the model.yaml exports of the command line and of
nbconvert, through the installed console scripts in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from modelyaml_repos import RUNTIME, make_repository, model_yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(command: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed console script `command` (next to this interpreter), with this worktree's
    package first on the path."""
    script = BIN / command
    assert script.is_file(), f"{script} is not installed"
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SIEVE_JUPYTER_CACHE_DIR", str(tmp_path / "cache"))
    path = make_repository(tmp_path / "yolor").path
    two = model_yaml("YOLOR-P6") + model_yaml("tiny").replace("models:\n", "")
    (path / "model.yaml").write_text(two)
    return path


def test_check_validates_and_describes_each_model(repository: Path) -> None:
    done = run("sieve-jupyter", "check", "model.yaml", cwd=repository)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"model.yaml:2: YOLOR-P6(datapoints: list[float]) -- code in {repository}"
    assert f"    file params: {repository / 'results' / 'params.txt'}" in lines
    assert "model.yaml:27: tiny(datapoints: list[float]) -- code in " in done.stdout
    assert lines[-1] == "model.yaml: valid (2 models)."
    assert "load" not in done.stdout  # nothing ran


def test_check_runtime_calls_load_once_and_fails_with_its_traceback(repository: Path) -> None:
    done = run(
        "sieve-jupyter", "check", "model.yaml", "--runtime", "--name", "tiny", cwd=repository
    )
    assert done.returncode == 0, done.stderr
    assert "YOLOR-P6" not in done.stdout and "tiny(" in done.stdout
    assert "    load ok (" in done.stdout
    assert done.stdout.rstrip().endswith("model.yaml: valid, load ran (1 model).")
    (repository / "results" / "params.txt").write_text("not a number\n")
    failed = run("sieve-jupyter", "check", "model.yaml", "--runtime", cwd=repository)
    assert failed.returncode == 1
    assert "    load FAILED:" in failed.stdout
    assert "ValueError: could not convert string to float: 'not a number" in failed.stdout
    assert "valid" not in failed.stdout.splitlines()[-1]


def test_check_reports_every_problem_with_its_line_and_exits_1(repository: Path) -> None:
    unknown = run("sieve-jupyter", "check", "model.yaml", "--name", "nope", cwd=repository)
    assert unknown.returncode == 1 and "'nope'" in unknown.stderr
    broken = model_yaml("YOLOR-P6", runtime=RUNTIME.replace("      load:", "      laod:"))
    (repository / "model.yaml").write_text(broken)
    done = run("sieve-jupyter", "check", "model.yaml", cwd=repository)
    assert done.returncode == 1 and done.stdout == ""
    assert "model.yaml:8:7: models[0].runtime.laod: is not a known key" in done.stderr
    assert "did you mean 'load'?" in done.stderr
    missing = run("sieve-jupyter", "check", "absent.yaml", cwd=repository)
    assert missing.returncode == 1 and "absent.yaml" in missing.stderr
    usage = run("sieve-jupyter", "check", cwd=repository)
    assert usage.returncode == 2 and "model.yaml" in usage.stderr


NOTEBOOK = [
    "import sieve_jupyter as sieve",
    """@sieve.Model(name="adder")
class Adder:
    def __setup__(self):
        self.offset = 100
    def __predict__(self, x1: int, x2: int = 2) -> int:
        return x1 + x2 + self.offset""",
    "Adder.run(1, 2)",
]


def test_the_cli_and_nbconvert_export_the_same_model_yaml_which_checks(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in NOTEBOOK]
    nbformat.write(nb, tmp_path / "adding.ipynb")
    done = run(
        "sieve-jupyter",
        "export",
        "adding.ipynb",
        "-o",
        "cli",
        "--format",
        "model.yaml",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Exported adder as a model.yaml" in done.stdout
    converted = run(
        "jupyter",
        "nbconvert",
        "--to",
        "sieve-modelyaml",
        "adding.ipynb",
        "--output-dir",
        "nbconvert",
        cwd=tmp_path,
    )
    assert converted.returncode == 0, converted.stderr

    def files(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }

    assert files(tmp_path / "cli") == files(tmp_path / "nbconvert")
    assert set(files(tmp_path / "cli")) == {"model.yaml", "src/main.py", "src/sieve_entrypoints.py"}
    checked = run("sieve-jupyter", "check", "cli/model.yaml", "--runtime", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "adder(x1: int, x2: int = 2)" in checked.stdout and "load ok" in checked.stdout
    refused = run(
        "sieve-jupyter", "export", "adding.ipynb", "-o", "x", "--format", "yaml", cwd=tmp_path
    )
    assert refused.returncode == 2 and "model.yaml" in refused.stderr
