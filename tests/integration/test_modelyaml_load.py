"""Loading a model.yaml and running it on warm local workers: the local-code form, universal
runtimes, how inputs are wired, output keys, GPUs, and every problem caught at load time."""

from __future__ import annotations

import concurrent.futures
import inspect
import os
import warnings
from pathlib import Path

import pytest
from modelyaml_repos import (
    RUNTIME,
    UNIVERSAL_YAML,
    Repository,
    make_repository,
    model_yaml,
)
from support import Unique

import sieve_jupyter as sieve
from sieve_jupyter import GpuUnavailableError, JobFuture, SieveWarning
from sieve_jupyter._errors import ModelYamlError
from sieve_jupyter.manager import get_manager
from sieve_jupyter.modelyaml import check, report
from sieve_jupyter.sdk import ModelHandle


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    monkeypatch.setenv("SIEVE_JUPYTER_CACHE_DIR", str(tmp_path / "cache"))
    return make_repository(tmp_path / "yolor")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def registered() -> set[str]:
    return {r.name for r in get_manager().records()}


def test_the_local_code_form_runs_warm_in_the_yaml_directory(
    repository: Repository, unique: Unique
) -> None:
    name = unique("yolor")
    path = write(repository.path / "model.yaml", model_yaml(name))
    model = sieve.load_yaml(path)[name]
    assert isinstance(model, ModelHandle)
    assert model.kind == "model" and model.name == name
    first = model.run(datapoints=[1.0, 0.25])
    assert first == [
        {"boxes": [3.0], "classes": [1], "scores": ["cpu"]},
        {"boxes": [0.75], "classes": [0], "scores": ["cpu"]},
    ]
    future = model.push([2.0])
    assert isinstance(future, JobFuture) and isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=60)[0]["boxes"] == [6.0]
    [worker] = model.workers
    assert worker["state"] == "ready" and worker["setup_seconds"] is not None
    # the loaded model answers by name too, as any registered model
    assert sieve.function.get(name).run([1.0])[0]["boxes"] == [3.0]


def test_load_runs_once_per_worker_in_the_code_directory(
    repository: Repository, unique: Unique
) -> None:
    name = unique("yolor")
    runtime = RUNTIME.replace("entrypoint: inference:predict", "entrypoint: probe:predict")
    (repository.path / "probe.py").write_text(
        "import os\n"
        "calls = []\n"
        "def predict(model, datapoints):\n"
        "    calls.append(1)\n"
        "    return [{'boxes': model['cwd'], 'classes': os.getcwd(), 'scores': len(calls),"
        " 'pid': os.getpid()} for _ in datapoints]\n"
    )
    path = write(repository.path / "model.yaml", model_yaml(name, runtime=runtime))
    model = sieve.load_yaml(path)[name]
    first = model.push([0])
    [answer] = first.result(timeout=60)
    assert "loading params.txt" in first.stdout  # load's output lands with the first job
    assert answer["boxes"] == str(repository.path) == answer["classes"]
    later = [model.run([0])[0] for _ in range(5)]
    assert [a["scores"] for a in later] == [2, 3, 4, 5, 6]  # one warm process, load kept
    assert {a["pid"] for a in later} == {answer["pid"]}


def test_call_arguments_are_typed_from_the_predict_functions_hints(
    repository: Repository, unique: Unique
) -> None:
    name = unique("yolor")
    runtime = RUNTIME.replace(
        "          - name: datapoints\n",
        "          - name: threshold\n            value: ${inputs.threshold}\n"
        "          - name: datapoints\n",
    )
    path = write(repository.path / "model.yaml", model_yaml(name, runtime=runtime))
    model = sieve.load_yaml(path)[name]
    assert model.spec.signature == "(datapoints: list[float], threshold: float = 0.5) -> list[dict]"
    inputs = model.spec.inputs
    assert inputs["required"] == ["datapoints"]
    assert inputs["properties"]["datapoints"] == {
        "type": "array",
        "items": {"type": "number"},
        "description": "numbers to scale.",
    }
    assert inputs["properties"]["threshold"]["default"] == 0.5
    assert model.spec.output["type"] == "array"
    assert model.spec.doc.startswith("Scale each datapoint.")
    # positional, keyword, and a left-out argument takes the function's own default
    assert model.run([1.0], 2.0)[0]["classes"] == [0]
    assert model.run(datapoints=[1.0], threshold=0.1)[0]["classes"] == [1]
    assert model.run([1.0])[0]["classes"] == [1]
    with pytest.raises(TypeError, match="unexpected keyword argument 'treshold'"):
        model.push([1.0], treshold=2)
    with pytest.raises(sieve.InputError) as info:  # the hints gate a push, nothing is queued
        model.push(["not a number"])
    assert info.value.field.startswith("datapoints")
    assert str(inspect.signature(model.__wrapped__.__predict__)).startswith("(self, datapoints")


def test_a_missing_output_key_fails_the_job_naming_the_key(
    repository: Repository, unique: Unique
) -> None:
    name = unique("yolor")
    runtime = RUNTIME.replace("inference:predict", "inference:predict_missing_scores")
    path = write(repository.path / "model.yaml", model_yaml(name, runtime=runtime))
    model = sieve.load_yaml(path)[name]
    with pytest.raises(ValueError) as info:
        model.run([1.0])
    assert str(info.value).startswith(
        f"{name}: item 0 of the output 'predictions' of inference:predict_missing_scores has no "
        f"key 'scores'; it has ['boxes', 'classes'] ({path}:26:17: "
        "models[0].runtime.predict.output.keys lists ['boxes', 'classes', 'scores'])."
    )


def test_environment_variables_reach_the_worker_as_declared_secrets(
    repository: Repository, unique: Unique, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-value-for-the-worker-only"
    monkeypatch.setenv("MODEL_SECRET", secret)
    name = unique("yolor")
    runtime = (
        "    runtime:\n"
        "      load:\n"
        "        entrypoint: inference:read_secret\n"
        "        inputs: [{name: name, value: MODEL_SECRET}]\n"
        "        output: {name: unused}\n"
        "      predict:\n"
        "        entrypoint: inference:predict_secret\n"
        "        inputs:\n"
        "          - {name: secret, value: '${MODEL_SECRET}'}\n"
        "          - {name: datapoints, value: '${datapoints}'}\n"
    )
    path = write(repository.path / "model.yaml", model_yaml(name, runtime=runtime))
    model = sieve.load_yaml(path)[name]
    assert [e.name for e in model.spec.env] == ["MODEL_SECRET"]
    record = get_manager().record(name)
    assert secret.encode() not in record.payload and secret not in model.spec.to_json()
    assert model.run([1, 2]) == [len(secret), len(secret)]


def test_a_universal_runtime_serves_any_model_name(
    tmp_path: Path, repository: Repository, unique: Unique
) -> None:
    universal = make_repository(tmp_path / "universal", own_yaml=UNIVERSAL_YAML)
    first, second = unique("yolor-a"), unique("yolor-b")
    mine = (
        "models:\n"
        f"  - name: {first}\n    repository: {{url: {universal.url}, branch: main}}\n"
        f"  - name: {second}\n    repository: {{url: {universal.url}, hash: {universal.first}}}\n"
    )
    models = sieve.load_yaml(write(tmp_path / "mine.yaml", mine))
    assert list(models) == [first, second]
    assert models[first].run([1.0]) == [{"name": first, "value": 3.0}]
    assert models[second].run([1.0]) == [{"name": second, "value": 2.0}]
    # the repository's own file, loaded directly, serves a name it is asked for
    own = universal.path / "model.yaml"
    direct = unique("asked-for")
    assert sieve.load_yaml(own, name=direct)[direct].run([2.0]) == [{"name": direct, "value": 6.0}]
    with pytest.raises(
        ModelYamlError,
        match=r"model.yaml:2:11: models\[0\].name: is a universal "
        "runtime",
    ):
        sieve.load_yaml(own)


def test_an_entry_without_runtime_needs_one_in_its_repository(
    tmp_path: Path, repository: Repository, unique: Unique
) -> None:
    path = write(
        tmp_path / "mine.yaml",
        f"models:\n  - name: {unique('m')}\n    repository: {{url: {repository.url}}}\n",
    )
    with pytest.raises(ModelYamlError) as info:
        sieve.load_yaml(path)
    assert str(info.value).startswith(f"{path}:2:5: models[0]: has no runtime, and its code")


def test_name_selects_one_model_and_other_entries_do_not_block_it(
    repository: Repository, unique: Unique, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    wanted, other = unique("wanted"), unique("other")
    text = model_yaml(wanted) + model_yaml(other).removeprefix("models:\n").replace(
        "results/params.txt", "${NOT_SET_ANYWHERE}"
    )
    path = write(repository.path / "model.yaml", text)
    assert list(sieve.load_yaml(path, name=wanted)) == [wanted]
    assert other not in registered()
    with pytest.raises(ModelYamlError, match="NOT_SET_ANYWHERE is not set"):
        sieve.load_yaml(path)
    with pytest.raises(ModelYamlError, match=r"has no model named 'nope' \(it has"):
        sieve.load_yaml(path, name="nope")


@pytest.mark.parametrize(
    ("old", "new", "position", "words"),
    [
        (
            "inference:get_model",
            "inferense:get_model",
            "9:21 models[0].runtime.load.entrypoint",
            "module 'inferense' is not in the code",
        ),
        (
            "inference:predict",
            "inference:predikt",
            "18:21 models[0].runtime.predict.entrypoint",
            "did you mean inference:predict?",
        ),
        (
            "name: params_url",
            "name: params_path",
            "11:19 models[0].runtime.load.inputs[0].name",
            "has no parameter 'params_path'",
        ),
        (
            "          - name: datapoints\n            value: ${datapoints}\n",
            "",
            "18:21 models[0].runtime.predict.entrypoint",
            "needs 'datapoints', which no input",
        ),
        (
            "device: cpu",
            "device: cpu\n      gpu: T4",
            "8:12 models[0].runtime.gpu",
            "names a GPU, but device is cpu",
        ),
        (
            "device: cpu",
            "device: gpu\n      gpu: T9",
            "8:12 models[0].runtime.gpu",
            "unknown GPU 'T9'",
        ),
        (
            "device: cpu",
            "device: cpu\n      image: Not/An Image",
            "8:14 models[0].runtime.image",
            "is not a Docker image reference",
        ),
        (
            "${model.files.params.url}",
            "${model.files.weights.url}",
            "12:20 models[0].runtime.load.inputs[0].value",
            "no file named 'weights'",
        ),
    ],
)
def test_each_problem_is_caught_at_load_with_its_line_and_nothing_registers(
    repository: Repository, unique: Unique, old: str, new: str, position: str, words: str
) -> None:
    name = unique("yolor")
    path = write(repository.path / "model.yaml", model_yaml(name).replace(old, new))
    before = registered()
    with pytest.raises(ModelYamlError) as info:
        sieve.load_yaml(path)
    [problem] = info.value.problems
    assert f"{problem.line}:{problem.column} {problem.key_path}" == position, problem
    assert words in problem.problem + problem.fix and problem.fix
    assert str(problem).startswith(f"{path}:{problem.line}:{problem.column}: ")
    assert registered() == before


def test_a_missing_file_to_load_says_so(tmp_path: Path) -> None:
    with pytest.raises(sieve.SpecError, match="there is no file"):
        sieve.load_yaml(tmp_path / "absent.yaml")


def test_a_base_image_is_reported_once_on_the_local_backend(
    repository: Repository, unique: Unique
) -> None:
    name = unique("yolor")
    path = write(
        repository.path / "model.yaml",
        model_yaml(name).replace(
            "device: cpu", "device: cpu\n      image: pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime"
        ),
    )
    model = sieve.load_yaml(path)[name]
    assert model.spec.environment.base_image == "pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime"
    with pytest.warns(SieveWarning, match="cannot honour base_image 'pytorch/pytorch"):
        assert model.run([1.0])[0]["boxes"] == [3.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.run([1.0])


def test_device_gpu_asks_the_allocator_for_a_gpu(
    repository: Repository, unique: Unique, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This machine has no GPU: the request fails as a decorated model's would, and with the
    # CPU fallback on, the model runs and ${model.runtime.device} says cpu.
    name = unique("yolor")
    path = write(
        repository.path / "model.yaml",
        model_yaml(name).replace("device: cpu", "device: gpu\n      gpu: {kind: L4, split: 2}"),
    )
    model = sieve.load_yaml(path)[name]
    assert str(model.spec.gpu) == "L4(split=2)"
    if os.environ.get("CUDA_VISIBLE_DEVICES") or Path("/dev/nvidia0").exists():
        pytest.skip("this machine has a GPU")
    with pytest.raises(GpuUnavailableError, match="asked for L4"):
        model.run([1.0])
    monkeypatch.setattr(sieve.config, "gpu_fallback", "cpu")
    name = unique("yolor")
    path.write_text(model_yaml(name).replace("device: cpu", "device: cuda"))
    model = sieve.load_yaml(path)[name]
    assert str(model.spec.gpu) == "T4"
    with pytest.warns(sieve.GpuFallbackWarning):
        assert model.run([1.0])[0]["scores"] == ["cpu"]


def test_check_validates_and_can_run_load_once(repository: Repository, unique: Unique) -> None:
    name = unique("yolor")
    path = write(repository.path / "model.yaml", model_yaml(name))
    [checked] = check(path)
    assert checked.signature == "(datapoints: list[float])" and checked.load_seconds is None
    assert checked.files == {"params": str(repository.path / "results" / "params.txt")}
    [ran] = check(path, runtime=True)
    assert ran.ok and ran.load_seconds is not None
    assert name not in registered()
    (repository.path / "inference.py").write_text(
        (repository.path / "inference.py")
        .read_text()
        .replace(
            "    with open(params_url) as f:",
            "    raise RuntimeError('weights are corrupt')\n    with open(params_url) as f:",
        )
    )
    text, status = report([ran])
    assert status == 0 and text.startswith(f"{path}:2: {name}(datapoints: list[float]) -- ")
    assert "load ok (" in text
    [failed] = check(path, runtime=True)
    assert not failed.ok and "RuntimeError: weights are corrupt" in (failed.load_error or "")
    text, status = report([failed])
    assert status == 1 and "load FAILED:" in text and "weights are corrupt" in text


def test_an_entrypoint_that_is_no_function_fails_setup_pointing_at_its_line(
    repository: Repository, unique: Unique
) -> None:
    # bound by assignment, it passes the static check: the worker finds out when importing it
    with (repository.path / "inference.py").open("a") as module:
        module.write("\nNOT_A_FUNCTION = 3\n")
    name = unique("yolor")
    runtime = RUNTIME.replace("inference:predict", "inference:NOT_A_FUNCTION")
    path = write(repository.path / "model.yaml", model_yaml(name, runtime=runtime))
    model = sieve.load_yaml(path)[name]
    with pytest.raises(sieve.SetupError) as info:
        model.run([1.0])
    assert (
        f"{path}:18:21: models[0].runtime.predict.entrypoint: NOT_A_FUNCTION is not callable"
    ) in str(info.value)
