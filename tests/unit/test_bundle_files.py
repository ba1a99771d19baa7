"""A bundle's files: deterministic, no secrets, a Dockerfile in the builder's order, a spec
validated with line numbers, an OpenAPI document Cog tools can read."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

import sieve_jupyter as sieve
from sieve_jupyter.bundle import BundleFunction, bundle_files, export_notebook, read_bundle
from sieve_jupyter.bundle._bundle import write_bundle
from sieve_jupyter.serve import ServeSettings
from sieve_jupyter.spec import Env, FunctionSpec, openapi_document, spec_from_callable


def _spec(**options: object) -> FunctionSpec:
    def detect(image: sieve.Image, threshold: float = 0.5) -> dict:  # noqa: ARG001
        return {}

    return spec_from_callable(detect, kind="function", name="detect", **options)


def _files(**options: object) -> dict[str, bytes]:
    spec = _spec(**options)
    return bundle_files(
        "def detect(image, threshold=0.5):\n    return {}\n",
        [BundleFunction("detect", spec)],
        default="detect",
        source="t.ipynb",
    )


def test_exporting_twice_gives_byte_identical_bundles(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import sieve_jupyter as sieve"),
        nbformat.v4.new_code_cell(
            "@sieve.function(name='double')\ndef double(x: int) -> int:\n    return 2 * x"
        ),
    ]
    nbformat.write(nb, tmp_path / "n.ipynb")
    first = export_notebook(tmp_path / "n.ipynb", tmp_path / "a")
    second = export_notebook(tmp_path / "n.ipynb", tmp_path / "b")
    assert first.files == second.files
    on_disk = {
        p.relative_to(tmp_path / "a").as_posix(): p.read_bytes()
        for p in (tmp_path / "a").rglob("*")
        if p.is_file()
    }
    assert on_disk == first.files
    for name in (
        "sieve.yaml",
        "src/main.py",
        "requirements.txt",
        "Dockerfile",
        ".dockerignore",
        "openapi.json",
        "README.md",
    ):
        assert name in on_disk, name
    # the README's call reads as Python a user would write
    assert 'remote = sieve.function.get("http://127.0.0.1:8000")\nremote.run(x=' in (
        on_disk["README.md"].decode()
    )


def test_env_names_appear_and_their_values_never_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "s3cr3t-value-never-written")
    files = _files(environment_variables=[Env(name="API_KEY", description="the key")])
    everything = b"".join(files.values())
    assert b"API_KEY" in files["sieve.yaml"] and b"API_KEY" in files["README.md"]
    assert b"s3cr3t-value-never-written" not in everything


def test_dockerfile_keeps_the_builders_order_and_copies_code_last() -> None:
    files = _files(python_packages=["numpy"], system_packages=["ffmpeg"])
    dockerfile = files["Dockerfile"].decode()
    order = [
        "FROM python:",
        "apt-get install",
        "pip install -r /etc/sieve/requirements.txt",
        "-m venv /opt/sieve/server",
        "COPY .sieve/lib",
        "COPY src",
    ]
    positions = [dockerfile.index(step) for step in order]
    assert positions == sorted(positions)
    assert dockerfile.rstrip().splitlines()[-1].startswith('CMD ["/opt/sieve/server/bin/python"')
    assert "SIEVE_WORKER_PYTHON=/opt/sieve/venv/bin/python" in dockerfile
    assert "io.sieve-jupyter.openapi=" in dockerfile and "io.sieve-jupyter.bundle=" in dockerfile
    assert files["requirements.txt"].decode().splitlines()[1:] == ["numpy"]
    assert ".sieve/lib/sieve_jupyter/runtime/worker.py" in files


def test_a_gpu_bundle_starts_from_a_cuda_base() -> None:
    dockerfile = _files(gpu=sieve.gpu.T4())["Dockerfile"].decode()
    assert "FROM nvidia/cuda:" in dockerfile
    assert 'io.sieve-jupyter.gpu="true"' in dockerfile


def test_sieve_yaml_errors_name_the_line(tmp_path: Path) -> None:
    write_bundle(_files(), tmp_path / "b")
    bundle = read_bundle(tmp_path / "b")
    assert bundle.default == "detect" and bundle.functions[0].entry == "detect"
    spec_file = tmp_path / "b" / "sieve.yaml"
    text = spec_file.read_text()
    lines = text.splitlines()
    kind_line = next(i for i, line in enumerate(lines, 1) if line.strip() == "kind: function")
    spec_file.write_text(text.replace("kind: function", "kind: funktion"))
    with pytest.raises(sieve.SpecError) as raised:
        read_bundle(tmp_path / "b")
    assert raised.value.field == f"sieve.yaml line {kind_line}: functions[0].spec.kind"
    assert "funktion" in raised.value.problem
    gpu_line = next(i for i, line in enumerate(lines, 1) if line.strip() == "gpu: null")
    spec_file.write_text(text.replace("gpu: null", "gpu: {kind: Z80}"))
    with pytest.raises(sieve.SpecError) as raised:
        read_bundle(tmp_path / "b")
    assert raised.value.field.startswith(f"sieve.yaml line {gpu_line}: functions[0].spec.gpu")
    spec_file.write_text(text.replace("default: detect", "default: nothing"))
    with pytest.raises(sieve.SpecError, match="'nothing' is not one of the bundle's"):
        read_bundle(tmp_path / "b")
    spec_file.write_text("functions: [")
    with pytest.raises(sieve.SpecError, match="not valid YAML"):
        read_bundle(tmp_path / "b")


def test_write_bundle_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a bundle"):
        write_bundle(_files(), tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_openapi_follows_cogs_shape() -> None:
    spec = _spec(metadata=sieve.Metadata(title="Detector"))
    document = openapi_document([spec], default="detect")
    schemas = document["components"]["schemas"]
    image = schemas["Input"]["properties"]["image"]
    assert image["format"] == "sieve-file" and image["x-order"] == 0
    assert schemas["Input"]["required"] == ["image"]
    response = schemas["PredictionResponse"]["properties"]
    assert {
        "id",
        "status",
        "input",
        "output",
        "error",
        "logs",
        "metrics",
        "created_at",
        "started_at",
        "completed_at",
    } <= set(response)
    assert schemas["Status"]["enum"] == [
        "starting",
        "processing",
        "succeeded",
        "canceled",
        "failed",
    ]
    assert document["info"]["title"] == "Detector"
    assert "/functions/detect/predictions/{prediction_id}/cancel" in document["paths"]
    json.dumps(document)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (ServeSettings(host="0.0.0.0", token=None), "host"),
        (ServeSettings(token="short"), "token"),
        (ServeSettings(workers=0, token=None), "workers"),
        (ServeSettings(port=70000, token=None), "port"),
        (ServeSettings(queue_size=-1, token=None), "queue_size"),
        (ServeSettings(max_body_bytes=-1, token=None), "max_body_bytes"),
        (ServeSettings(inline_file_bytes=-5, token=None), "inline_file_bytes"),
        (ServeSettings(keep_seconds=0, token=None), "keep_seconds"),
        (ServeSettings(backend="docker", token=None), "backend"),
        (ServeSettings(ray_address="auto", token=None), "ray_address"),
    ],
)
def test_bad_serve_settings_name_the_setting(settings: ServeSettings, field: str) -> None:
    with pytest.raises(sieve.ConfigurationError) as raised:
        settings.validate()
    assert str(raised.value).startswith(f"{field}:")
    assert "Fix:" in str(raised.value)


def test_serving_a_missing_notebook_says_so_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sieve_jupyter.cli import main

    assert main(["serve", str(tmp_path / "demo.ipynb")]) == 2
    said = capsys.readouterr().err
    assert f"there is no file {tmp_path / 'demo.ipynb'}. Fix: check the path." in said


def test_a_model_yaml_is_not_served_on_ray(tmp_path: Path) -> None:
    from sieve_jupyter.serve import serve_modelyaml

    with pytest.raises(sieve.ConfigurationError, match=r"^backend: a model.yaml's models run"):
        serve_modelyaml(tmp_path / "model.yaml", ServeSettings(backend="ray", token=None))


def test_a_public_address_is_allowed_with_a_token_or_insecure() -> None:
    ServeSettings(host="0.0.0.0", token="x" * 32).validate()
    ServeSettings(host="0.0.0.0", token=None, insecure=True).validate()
    ServeSettings(host="::1", token=None).validate()


def test_serving_a_notebook_with_a_model_yaml_option_says_which_applies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sieve_jupyter.cli import main

    (tmp_path / "main.py").write_text("")
    assert main(["serve", str(tmp_path / "main.py"), "--name", "adder"]) == 2
    said = capsys.readouterr().err
    assert "serves all its functions (choose the default one with --default)" in said
    assert "--name applies to a model.yaml" in said
