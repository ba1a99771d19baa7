"""`%sieve load model.yaml` in a real ipykernel: the models run, list, and get forms from the
predict function's hints; a bad file fails the cell with its line."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from _kernel import KernelSession
from modelyaml_repos import RUNTIME, make_repository, model_yaml

WITH_THRESHOLD = RUNTIME.replace(
    "          - name: datapoints\n",
    "          - name: threshold\n            value: ${inputs.threshold}\n"
    "          - name: datapoints\n",
)


def test_sieve_load_magic_registers_runs_and_forms(
    kernel_session: KernelSession, tmp_path: Path
) -> None:
    repository = make_repository(tmp_path / "yolor")
    (repository.path / "model.yaml").write_text(model_yaml("yolor", runtime=WITH_THRESHOLD))
    kernel_session.ok("%load_ext sieve_jupyter\nimport sieve_jupyter as sieve")
    loaded = kernel_session.ok("models = %sieve load yolor/model.yaml --workers 1")
    assert (
        "Loaded model 'yolor' (local, 1 worker): yolor(datapoints: list[float], "
        "threshold: float = 0.5) -> list[dict]"
    ) in loaded.stream()
    ran = kernel_session.ok("print(models['yolor'].run([1.0, 0.25], threshold=0.1))")
    # load's output lands under the cell whose call started the worker
    assert "loading params.txt" in ran.stream()
    assert ast.literal_eval(ran.stream().splitlines()[-1]) == [
        {"boxes": [3.0], "classes": [1], "scores": ["cpu"]},
        {"boxes": [0.75], "classes": [1], "scores": ["cpu"]},
    ]
    listing = kernel_session.ok("%sieve ls")
    assert "yolor" in listing.text and "warm" in listing.text

    fields = kernel_session.ok(
        "import json\n"
        "form = sieve.form(models['yolor'])\n"
        "print(json.dumps({name: field.kind for name, field in form.fields.items()}))"
    )
    assert json.loads(fields.stream().strip()) == {"datapoints": "json", "threshold": "number"}
    submitted = kernel_session.ok(
        "form.set(datapoints=[2.0], threshold=5.0)\n"
        "future = form.submit()\n"
        "print(future.result(timeout=60))"
    )
    assert ast.literal_eval(submitted.stream().strip().splitlines()[-1]) == [
        {"boxes": [6.0], "classes": [0], "scores": ["cpu"]}
    ]


def test_a_bad_model_yaml_fails_the_cell_with_its_line(
    kernel_session: KernelSession, tmp_path: Path
) -> None:
    repository = make_repository(tmp_path / "yolor")
    (repository.path / "bad.yaml").write_text(
        model_yaml("yolor").replace("inference:get_model", "inference:get_modle")
    )
    kernel_session.ok("%load_ext sieve_jupyter")
    failed = kernel_session.run("%sieve load yolor/bad.yaml")
    assert not failed.ok
    error = failed.error or {}
    assert error["ename"] == "ModelYamlError"
    assert error["evalue"].startswith(
        "yolor/bad.yaml:9:21: models[0].runtime.load.entrypoint: inference.py defines no "
        "'get_modle'"
    )
    assert "did you mean inference:get_model?" in error["evalue"]
    listing = kernel_session.ok("%sieve ls")
    assert "yolor" not in listing.text
    usage = kernel_session.run("%sieve load")
    assert not usage.ok and "give the model.yaml to load" in (usage.error or {})["evalue"]
