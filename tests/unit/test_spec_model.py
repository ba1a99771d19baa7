"""FunctionSpec, Environment, GpuRequest, CUDA table: round trips, hashing, checks on load."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

import sieve_jupyter as sieve
from sieve_jupyter import SpecError
from sieve_jupyter.spec import (
    CUDA_VERSIONS,
    DEFAULT_CUDA_VERSION,
    GPU_KINDS,
    Env,
    Environment,
    FunctionSpec,
    GpuRequest,
    Metadata,
    gpu,
    resolve_cuda_version,
    spec_from_callable,
)


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


def rich(
    video: sieve.Video,
    size: Size = Size.SMALL,
    mode: Literal["fast", "best"] = "fast",
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5,
    note: str | None = None,
) -> Iterator[dict[str, int]]:
    """Process a video.

    Args:
        video: the input
        size: how big
    """
    yield {}


def full_spec() -> FunctionSpec:
    return spec_from_callable(
        rich,
        kind="function",
        name="processor",
        gpu=gpu.A10020GB(split=4),
        python_packages=["numpy>=1.26"],
        system_packages=["ffmpeg"],
        run_commands=["echo hi"],
        environment_variables=[Env("HF_TOKEN", "token", default="none")],
        metadata=Metadata(
            title="P", description="d", code_url="u", image="i", tags=("a", "b"), readme="# R"
        ),
        restart_on_error=False,
    )


# --- round trips ------------------------------------------------------------------------------


def test_dict_round_trip_is_exact() -> None:
    spec = full_spec()
    again = FunctionSpec.from_dict(spec.to_dict())
    assert again == spec
    assert again.to_dict() == spec.to_dict()


def test_json_round_trip_is_exact() -> None:
    spec = full_spec()
    text = spec.to_json()
    again = FunctionSpec.from_json(text)
    assert again == spec
    assert again.to_json() == text
    assert FunctionSpec.from_json(spec.to_json(indent=2)) == spec


def test_to_dict_is_plain_json() -> None:
    data = full_spec().to_dict()
    assert json.loads(json.dumps(data)) == data


def test_model_round_trip() -> None:
    class Adder:
        def __setup__(self) -> None:
            pass

        def __predict__(self, x: int) -> int:
            return x

    spec = spec_from_callable(Adder, kind="model", name="adder")
    assert FunctionSpec.from_json(spec.to_json()) == spec


def test_specs_are_frozen() -> None:
    spec = full_spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.environment.python_packages = ()  # type: ignore[misc]


def test_to_dict_returns_a_copy() -> None:
    spec = full_spec()
    data = spec.to_dict()
    data["inputs"]["properties"].clear()
    assert spec.inputs["properties"]


# --- from_dict validates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("name",), "a b", "name"),
        (("kind",), "job", "kind"),
        (("gpu",), {"kind": "T4", "split": 12}, "gpu.split"),
        (("gpu",), {"kind": "T9"}, "gpu"),
        (("gpu",), {"kind": "T4", "count": 2}, "gpu"),
        (("environment", "cuda_version"), "10.0", "cuda_version"),
        (("environment", "python_packages"), ["numpy>="], "python_packages[0]"),
        (("environment", "python_packages"), "numpy", "python_packages"),
        (("environment", "extra"), 1, "environment.extra"),
        (("env",), [{"name": "1A"}], "environment_variables[0].name"),
        (("env",), [{"description": "no name"}], "environment_variables[0].name"),
        (("metadata", "tags"), "x", "metadata.tags"),
        (("restart_on_error",), "yes", "restart_on_error"),
        (("inputs",), "not a schema", "inputs"),
        (("spec_version",), 99, "spec_version"),
        (("surprise",), 1, "spec.surprise"),
    ],
)
def test_from_dict_rejects_bad_values(path: tuple[str, ...], value: Any, field: str) -> None:
    data = full_spec().to_dict()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SpecError) as info:
        FunctionSpec.from_dict(data)
    assert field in str(info.value)


def test_from_dict_requires_a_name() -> None:
    data = full_spec().to_dict()
    del data["name"]
    with pytest.raises(SpecError, match="name"):
        FunctionSpec.from_dict(data)


@pytest.mark.parametrize("text", ["{", "[]", "null"])
def test_from_json_rejects_garbage(text: str) -> None:
    with pytest.raises(SpecError, match="spec"):
        FunctionSpec.from_json(text)


def test_inputs_must_be_json() -> None:
    with pytest.raises(SpecError, match="inputs"):
        FunctionSpec(name="x", inputs={"default": object()})


# --- environment and its hash ----------------------------------------------------------------


def test_environment_holds_only_image_inputs() -> None:
    names = {f.name for f in dataclasses.fields(Environment)}
    assert names == {
        "python_version",
        "python_packages",
        "system_packages",
        "cuda_version",
        "run_commands",
        "base_image",
    }


def test_an_environment_without_a_base_image_keeps_the_hash_it_had_before_that_field() -> None:
    # image tags derive from this hash: adding the field must not rebuild anyone's images
    env = Environment(python_version="3.11", python_packages=("numpy",))
    assert "base_image" not in env.to_dict()
    assert env.content_hash() == "a5540d907eca8765d25c3e8cbc3a5a5662900934460a14ffa4a5b6d660ffcd66"


def test_a_base_image_round_trips_and_changes_the_hash() -> None:
    env = Environment(python_version="3.11", base_image="pytorch/pytorch:2.3.1-cuda12.1-runtime")
    assert Environment.from_dict(env.to_dict()) == env
    assert env.content_hash() != dataclasses.replace(env, base_image=None).content_hash()


@pytest.mark.parametrize("image", ["Not An Image", "python:3.11 slim", "https://x/y", ""])
def test_a_bad_base_image_names_the_field_and_fix(image: str) -> None:
    with pytest.raises(SpecError) as info:
        Environment(base_image=image)
    assert info.value.field == "base_image" and info.value.fix


def test_mounts_round_trip_and_are_left_out_when_empty() -> None:
    assert "mounts" not in FunctionSpec(name="f").to_dict()
    spec = FunctionSpec(name="f", mounts=["/srv/checkout:ro", "/data/weights.pt"])
    assert spec.mounts == ("/srv/checkout:ro", "/data/weights.pt")
    assert FunctionSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("mount", ["relative/path", "C:/data", "/ok\0nul"])
def test_a_mount_must_be_an_absolute_host_path(mount: str) -> None:
    with pytest.raises(SpecError) as info:
        FunctionSpec(name="f", mounts=[mount])
    assert info.value.field == "mounts[0]" and "absolute" in str(info.value)


def test_content_hash_is_stable_and_hex() -> None:
    env = Environment(python_version="3.11", python_packages=("numpy",))
    digest = env.content_hash()
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == Environment(python_version="3.11", python_packages=["numpy"]).content_hash()
    # pinned: the hash must not drift between runs or versions without a reason
    assert digest == Environment.from_dict(json.loads(json.dumps(env.to_dict()))).content_hash()


def test_editing_code_does_not_change_the_environment_hash() -> None:
    def v1(x: int) -> int:
        return x

    def v2(x: str, y: int = 2) -> str:
        """Now documented."""
        return x * y

    a = spec_from_callable(v1, kind="function", name="f", python_packages=["numpy"])
    b = spec_from_callable(
        v2,
        kind="function",
        name="renamed",
        python_packages=["numpy"],
        metadata=Metadata(title="t"),
        environment_variables=["KEY"],
        restart_on_error=False,
    )
    assert a.environment.content_hash() == b.environment.content_hash()


@pytest.mark.parametrize(
    "change",
    [
        {"python_version": "3.10"},
        {"python_packages": ("numpy", "scipy")},
        {"system_packages": ("ffmpeg",)},
        {"cuda_version": "12.4"},
        {"run_commands": ("echo",)},
    ],
)
def test_environment_changes_change_the_hash(change: dict[str, Any]) -> None:
    base = Environment(python_version="3.11", python_packages=("numpy",))
    assert dataclasses.replace(base, **change).content_hash() != base.content_hash()


def test_gpu_split_does_not_change_the_image() -> None:
    def f(x: int) -> int:
        return x

    a = spec_from_callable(f, kind="function", name="f", gpu=gpu.T4())
    b = spec_from_callable(f, kind="function", name="f", gpu=gpu.L4(split=4))
    assert a.environment.content_hash() == b.environment.content_hash()
    assert a.environment.needs_cuda


# --- GPU requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["T4", "L4", "A100", "A10020GB", "V100", "CPU", "A10G", "L40S", "H100", "H200"]
)
@pytest.mark.parametrize("split", [1, 8])
def test_every_issue_kind_has_a_constructor(kind: str, split: int) -> None:
    request = getattr(gpu, kind)(split=split)
    assert request == GpuRequest(kind, split)
    assert GpuRequest.from_dict(request.to_dict()) == request


def test_every_kind_is_in_the_namespace() -> None:
    for kind in GPU_KINDS:
        assert getattr(gpu, kind)().kind == kind


def test_gpu_request_text() -> None:
    assert str(gpu.T4()) == "T4"
    assert str(gpu.T4(split=2)) == "T4(split=2)"
    assert repr(gpu.T4) == "sieve.gpu.T4"
    assert gpu.CPU().is_cpu


def test_gpu_namespace_is_not_instantiated() -> None:
    with pytest.raises(TypeError):
        gpu()


def test_gpu_kind_names_are_normalised() -> None:
    assert GpuRequest("a100-20gb").kind == "A10020GB"
    assert GpuRequest("nvidia-tesla-t4").kind == "T4"


# --- CUDA table -------------------------------------------------------------------------------


def test_cuda_table_is_sorted_and_covers_current_lines() -> None:
    keys = [tuple(int(p) for p in v.split(".")) for v in CUDA_VERSIONS]
    assert keys == sorted(keys)
    assert len(set(CUDA_VERSIONS)) == len(CUDA_VERSIONS)
    majors = {k[0] for k in keys}
    assert {11, 12, 13} <= majors
    assert DEFAULT_CUDA_VERSION in CUDA_VERSIONS


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        ("12.2", "12.2.2"),
        ("12.2.0", "12.2.0"),
        ("11.8", "11.8.0"),
        ("cu121", "12.1.1"),
        ("v12.4", "12.4.1"),
    ],
)
def test_partial_cuda_versions_resolve(given: str, resolved: str) -> None:
    assert resolve_cuda_version(given) == resolved


def test_major_only_resolves_to_newest_of_the_line() -> None:
    newest_12 = [v for v in CUDA_VERSIONS if v.startswith("12.")][-1]
    assert resolve_cuda_version("12") == newest_12


def test_unknown_cuda_lists_known_lines() -> None:
    with pytest.raises(SpecError) as info:
        resolve_cuda_version("12.7")
    assert "cuda_version" in str(info.value)
    assert "12.6" in info.value.fix


def test_yaml_round_trip_is_exact() -> None:
    spec = full_spec()
    text = spec.to_yaml()
    assert text.startswith("spec_version: 1\nname: processor\n")
    assert FunctionSpec.from_yaml(text) == spec


@pytest.mark.parametrize(("text", "field"), [("name: [", "spec"), ("name: a b\n", "name")])
def test_bad_yaml(text: str, field: str) -> None:
    with pytest.raises(SpecError) as info:
        FunctionSpec.from_yaml(text)
    assert field in str(info.value)
