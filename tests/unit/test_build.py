"""The image builder's output: base choice, layer order, pins, determinism, and bad options."""

from __future__ import annotations

import importlib.metadata
import io
import tarfile
from pathlib import Path

import pytest

from sieve_jupyter._errors import ConfigurationError, SpecError
from sieve_jupyter.build import (
    BuildOptions,
    choose_base_image,
    cuda_ubuntu_release,
    make_build_context,
)
from sieve_jupyter.spec._model import Environment

KERNEL_CLOUDPICKLE = importlib.metadata.version("cloudpickle")


def instructions(dockerfile: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    joined = dockerfile.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def index_of(lines: list[str], needle: str) -> int:
    for i, line in enumerate(lines):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in Dockerfile:\n" + "\n".join(lines))


def test_cpu_environment_starts_from_official_python_slim_with_the_kernel_python() -> None:
    env = Environment(python_version="3.11")
    ctx = make_build_context(env)
    assert ctx.base_image == "python:3.11-slim"
    assert instructions(ctx.dockerfile)[0] == "FROM python:3.11-slim"
    # the official image has the interpreter already: no install step
    assert "install-python.sh" not in ctx.files


def test_gpu_environment_starts_from_cuda_runtime_and_installs_the_requested_python() -> None:
    env = Environment(python_version="3.11", cuda_version="12.2")
    ctx = make_build_context(env)
    assert ctx.base_image == "nvidia/cuda:12.2.2-runtime-ubuntu22.04"
    lines = instructions(ctx.dockerfile)
    assert index_of(lines, "install-python.sh 3.11") < index_of(lines, "python3.11 -m venv")
    assert b"deadsnakes" in ctx.files["install-python.sh"]


@pytest.mark.parametrize(
    ("cuda", "ubuntu"),
    [("11.3", "20.04"), ("11.8", "22.04"), ("12.6.3", "22.04"), ("13.0", "24.04")],
)
def test_cuda_base_follows_the_ubuntu_release_nvidia_publishes(cuda: str, ubuntu: str) -> None:
    assert cuda_ubuntu_release(cuda) == ubuntu
    base = choose_base_image("3.10", cuda)
    assert base.image.endswith(f"-runtime-ubuntu{ubuntu}")


def test_unknown_cuda_version_names_the_field_and_fix() -> None:
    with pytest.raises(SpecError) as info:
        choose_base_image("3.11", "10.2")
    assert info.value.field == "cuda_version"
    assert "Fix:" in str(info.value)


def test_explicit_base_image_overrides_cpu_and_gpu_defaults() -> None:
    options = BuildOptions(base_image="registry.example/team/base:1")
    for env in (Environment(), Environment(cuda_version="12.6")):
        ctx = make_build_context(env, options)
        assert ctx.base_image == "registry.example/team/base:1"
        # a foreign base may lack the Python: the install step checks and fills it in
        assert "install-python.sh" in ctx.files


def test_an_environments_own_base_image_wins_over_the_configured_one() -> None:
    # a model.yaml's runtime.image is more specific than a kernel-wide docker_base_image
    env = Environment(base_image="pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime")
    ctx = make_build_context(env, BuildOptions(base_image="registry.example/team/base:1"))
    assert ctx.base_image == "pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime"
    assert ctx.dockerfile.splitlines()[2] == f"FROM {ctx.base_image}"
    assert ctx.labels["io.sieve-jupyter.base-image"] == ctx.base_image
    assert "install-python.sh" in ctx.files  # it may lack the kernel's Python
    assert ctx.tag != make_build_context(Environment()).tag


def test_base_templates_are_overridable() -> None:
    options = BuildOptions(
        cpu_base_template="mirror.example/python:{python}-bookworm",
        gpu_base_template="mirror.example/cuda:{cuda}-cudnn-runtime-ubuntu{ubuntu}",
    )
    assert make_build_context(Environment(), options).base_image.startswith(
        "mirror.example/python:"
    )
    gpu = make_build_context(Environment(cuda_version="12.6"), options)
    assert gpu.base_image == "mirror.example/cuda:12.6.3-cudnn-runtime-ubuntu22.04"


def test_layers_go_from_most_to_least_stable(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    env = Environment(
        python_packages=["numpy>=1.26"], system_packages=["ffmpeg"], run_commands=["echo done"]
    )
    lines = instructions(
        make_build_context(env, BuildOptions(base_image="b", ca_bundle=ca)).dockerfile
    )
    order = [
        index_of(lines, "FROM b"),
        index_of(lines, "COPY ca-bundle.crt"),
        index_of(lines, "install-python.sh 3."),
        index_of(lines, "pip install --target"),
        index_of(lines, "apt-get install -y --no-install-recommends ffmpeg"),
        index_of(lines, "pip install -r /etc/sieve/requirements.txt"),
        index_of(lines, "RUN echo done"),
        index_of(lines, "LABEL "),
    ]
    assert order == sorted(order)


def test_ca_bundle_is_copied_in_and_named_for_pip_apt_and_requests(tmp_path: Path) -> None:
    ca = tmp_path / "corp.pem"
    ca.write_bytes(b"PEM BYTES")
    ctx = make_build_context(Environment(), BuildOptions(ca_bundle=ca))
    assert ctx.files["ca-bundle.crt"] == b"PEM BYTES"
    for name in ("PIP_CERT=", "SSL_CERT_FILE=", "REQUESTS_CA_BUNDLE=", "Acquire::https::CAInfo"):
        assert name in ctx.dockerfile


def test_missing_ca_bundle_names_the_option_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_build_context(Environment(), BuildOptions(ca_bundle=tmp_path / "nope.pem"))
    assert "docker_ca_bundle" in str(info.value)
    assert "Fix:" in str(info.value)


def test_pip_requirements_pin_the_kernels_cloudpickle_first() -> None:
    env = Environment(python_packages=["numpy>=1.26", "--extra-index-url https://x.example/simple"])
    requirements = make_build_context(env).files["requirements.txt"].decode().splitlines()
    assert requirements == [
        f"cloudpickle=={KERNEL_CLOUDPICKLE}",
        "numpy>=1.26",
        "--extra-index-url https://x.example/simple",
    ]


def test_sdk_dependencies_are_pinned_to_the_kernel_and_kept_apart_from_the_users() -> None:
    ctx = make_build_context(Environment())
    pins = ctx.files["sieve-requirements.txt"].decode().splitlines()
    assert f"pydantic=={importlib.metadata.version('pydantic')}" in pins
    assert f"cloudpickle=={KERNEL_CLOUDPICKLE}" in ctx.dockerfile
    # no user packages: no user pip step at all
    assert "requirements.txt" not in ctx.files
    assert "zz-sieve-deps.pth" in ctx.dockerfile


def test_context_holds_no_code_only_generated_files() -> None:
    ctx = make_build_context(Environment(python_packages=["six"]), BuildOptions(base_image="b"))
    assert set(ctx.files) <= {
        "Dockerfile",
        "requirements.txt",
        "install-python.sh",
        "ca-bundle.crt",
        "sieve-requirements.txt",
    }
    copies = [line for line in instructions(ctx.dockerfile) if line.startswith(("COPY", "ADD"))]
    assert all(line.split()[1] in ctx.files for line in copies)


def test_same_environment_gives_the_same_tag_and_identical_bytes() -> None:
    a = make_build_context(Environment(python_packages=["six"], system_packages=["curl"]))
    b = make_build_context(Environment(python_packages=("six",), system_packages=("curl",)))
    assert a.tag == b.tag
    assert a.tar_bytes() == b.tar_bytes()
    assert a.tag.startswith("sieve-jupyter-env:")


@pytest.mark.parametrize(
    "changed",
    [
        Environment(python_packages=["six==1.16.0"]),
        Environment(python_packages=["six"], system_packages=["curl"]),
        Environment(python_packages=["six"], run_commands=["true"]),
        Environment(python_packages=["six"], cuda_version="12.6"),
    ],
)
def test_any_environment_change_changes_the_tag(changed: Environment) -> None:
    assert (
        make_build_context(changed).tag
        != make_build_context(Environment(python_packages=["six"])).tag
    )


def test_build_options_feed_the_tag() -> None:
    env = Environment()
    assert make_build_context(env).tag != make_build_context(env, BuildOptions(base_image="b")).tag
    pinned = BuildOptions(cloudpickle_version="3.0.0")
    assert make_build_context(env).tag != make_build_context(env, pinned).tag


def test_labels_carry_the_environment_and_schema() -> None:
    env = Environment(python_packages=["six"], run_commands=['echo "$HOME"'])
    ctx = make_build_context(env)
    assert ctx.labels["io.sieve-jupyter.environment-hash"] == env.content_hash()
    assert ctx.labels["io.sieve-jupyter.schema"] == "1"
    assert '"six"' in ctx.labels["io.sieve-jupyter.environment"]
    # quotes and $ are escaped so the builder neither breaks the line nor substitutes variables
    label_line = next(line for line in instructions(ctx.dockerfile) if line.startswith("LABEL"))
    assert "\\$HOME" in label_line
    assert "$" not in label_line.replace("\\$", "")


def test_tar_is_reproducible_and_holds_every_file() -> None:
    ctx = make_build_context(Environment(cuda_version="12.6"))
    with tarfile.open(fileobj=io.BytesIO(ctx.tar_bytes())) as tar:
        members = tar.getmembers()
        assert sorted(m.name for m in members) == sorted(ctx.files)
        assert {m.mtime for m in members} == {0}
        extracted = tar.extractfile("Dockerfile")
        assert extracted is not None and extracted.read() == ctx.files["Dockerfile"]
