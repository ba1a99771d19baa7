"""What a spec becomes on a Ray cluster (backends/_ray_options.py), and the Ray settings'
validation. Pure functions of the spec, the settings and a node list: no Ray needed here (the
ray tier runs the same mapping against a real cluster's scheduler)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import sieve_jupyter as sieve
from sieve_jupyter._config import Config
from sieve_jupyter._errors import ConfigurationError
from sieve_jupyter.backends._ray_options import (
    ACCELERATOR_TYPES,
    actor_options,
    infeasibility,
    needs_built_image,
    spread_node,
    unsupported_notes,
)
from sieve_jupyter.spec import GPU_KINDS, Env, Environment, FunctionSpec, GpuRequest

KERNEL_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _spec(**fields: Any) -> FunctionSpec:
    environment = fields.pop("environment", {})
    return FunctionSpec(name="f", environment=Environment(**environment), **fields)


def _node(ip: str, alive: bool = True, **resources: float) -> dict[str, Any]:
    return {
        "NodeID": f"id-{ip}",
        "NodeManagerAddress": ip,
        "Alive": alive,
        "Resources": {"CPU": 2.0, **resources},
    }


#: a cluster shaped like the ray tier's: a head without GPUs, a node with one T4
CLUSTER = [
    _node("10.0.0.1", head=1000),
    _node("10.0.0.2", GPU=1.0, **{"accelerator_type:T4": 1.0, "node2": 1000}),
]


def test_a_gpu_share_becomes_num_gpus_and_the_accelerator_type() -> None:
    options = actor_options(_spec(gpu=GpuRequest("T4", split=2)))
    assert options["num_gpus"] == 0.5
    assert options["accelerator_type"] == "T4"
    # The pool replaces dead workers itself: Ray must neither restart nor re-run.
    assert options["max_restarts"] == 0
    assert options["max_task_retries"] == 0
    assert options["scheduling_strategy"] == "SPREAD"


def test_no_gpu_and_the_cpu_kind_ask_for_no_gpu() -> None:
    for spec in (_spec(), _spec(gpu=GpuRequest("CPU"))):
        options = actor_options(spec)
        assert "num_gpus" not in options
        assert "accelerator_type" not in options


def test_every_gpu_kind_has_a_ray_accelerator_type() -> None:
    assert set(ACCELERATOR_TYPES) == set(GPU_KINDS) - {"CPU"}
    assert actor_options(_spec(gpu=GpuRequest("A10080GB")))["accelerator_type"] == "A100-80G"


def test_python_packages_go_to_the_runtime_env_merged_with_the_settings() -> None:
    spec = _spec(environment={"python_packages": ("numpy>=1.26", "pillow")})
    extra = {
        "num_cpus": 1,
        "resources": {"node2": 1},
        "runtime_env": {"pip": ["tqdm"], "env_vars": {"MODE": "x"}},
    }
    options = actor_options(spec, extra)
    assert options["runtime_env"] == {
        "pip": ["tqdm", "numpy>=1.26", "pillow"],
        "env_vars": {"MODE": "x"},
    }
    assert options["num_cpus"] == 1
    assert options["resources"] == {"node2": 1}
    assert extra["runtime_env"] == {"pip": ["tqdm"], "env_vars": {"MODE": "x"}}
    assert "runtime_env" not in actor_options(_spec())


def test_in_an_image_the_python_packages_are_the_images() -> None:
    # (Ray refuses `pip` beside an `image_uri`: "cannot be used together with other fields")
    spec = _spec(environment={"python_packages": ("pillow",), "system_packages": ("ffmpeg",)})
    built = actor_options(spec, {"num_cpus": 1}, image="127.0.0.1:5000/sieve-jupyter-env:abc")
    assert built["runtime_env"] == {"image_uri": "127.0.0.1:5000/sieve-jupyter-env:abc"}
    assert built["num_cpus"] == 1
    given = {"runtime_env": {"image_uri": "registry.example/img:1"}}
    assert actor_options(spec, given)["runtime_env"] == {"image_uri": "registry.example/img:1"}
    # an image given by hand must carry them: said once, with the image's name
    (note,) = unsupported_notes(spec, given)
    assert "python_packages ['pillow']" in note and "registry.example/img:1" in note


def test_an_image_is_built_only_for_what_only_an_image_honours() -> None:
    registry = "127.0.0.1:5000"
    apt = _spec(environment={"system_packages": ("ffmpeg",)})
    pip_only = _spec(environment={"python_packages": ("pillow",)})
    assert needs_built_image(apt, None, registry)
    assert not needs_built_image(apt, None, None)  # no registry: reported instead
    assert not needs_built_image(pip_only, None, registry)  # Ray's pip does that
    assert not needs_built_image(apt, {"runtime_env": {"image_uri": "r/i:1"}}, registry)
    # with a registry, nothing is left unhonoured
    assert unsupported_notes(apt, None, registry) == []


def test_env_values_never_reach_the_actor_options(monkeypatch: pytest.MonkeyPatch) -> None:
    # (Ray shows a runtime_env in its dashboard and `ray list actors --detail`: the values
    # travel with the call that loads the worker instead)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    options = actor_options(_spec(env=(Env("HF_TOKEN"), Env("MODE", default="fast-default"))))
    assert "hf_secret_value_123" not in repr(options)
    assert "fast-default" not in repr(options)
    assert "HF_TOKEN" not in repr(options)


def test_system_packages_and_run_commands_are_reported_unless_an_image_is_given() -> None:
    spec = _spec(
        environment={
            "system_packages": ("ffmpeg",),
            "run_commands": ("echo hi",),
        }
    )
    (note,) = unsupported_notes(spec)
    assert "system_packages ['ffmpeg']" in note
    assert "run_commands ['echo hi']" in note
    assert "image_uri" in note and "ray_image_registry" in note  # the fixes
    assert unsupported_notes(spec, {"runtime_env": {"image_uri": "registry.example/i:1"}}) == []
    assert unsupported_notes(_spec()) == []


def test_a_base_image_and_a_chosen_cuda_version_are_reported_as_the_local_backend_does() -> None:
    from sieve_jupyter.backends.local import LocalBackend

    spec = _spec(
        environment={
            "base_image": "nvidia/cuda:12.1.1-runtime-ubuntu22.04",
            "cuda_version": "11.8",
        },
        gpu=GpuRequest("T4"),
    )
    (note,) = unsupported_notes(spec)
    assert "base_image 'nvidia/cuda:12.1.1-runtime-ubuntu22.04'" in note
    assert "cuda_version '11.8.0'" in note
    # the same settings, in the same words, from the local backend (one list for both)
    local = " ".join(LocalBackend().check(spec))
    assert "base_image 'nvidia/cuda:12.1.1-runtime-ubuntu22.04', cuda_version '11.8.0'" in local
    assert "base_image 'nvidia/cuda:12.1.1-runtime-ubuntu22.04', cuda_version '11.8.0'" in note


def test_another_python_version_is_reported() -> None:
    other = "3.10" if KERNEL_PYTHON != "3.10" else "3.11"
    (note,) = unsupported_notes(_spec(environment={"python_version": other}))
    assert f"python_version {other!r}" in note
    assert KERNEL_PYTHON in note


def test_a_gpu_kind_the_cluster_lacks_is_an_error_saying_what_it_has() -> None:
    spec = _spec(gpu=GpuRequest("A100"))
    problem = infeasibility(spec, 1, actor_options(spec), CLUSTER)
    assert problem is not None
    assert problem.startswith("gpu: ")
    assert "A100" in problem
    assert "10.0.0.2: 2 CPU, 1 GPU (T4)" in problem  # what the cluster has
    assert "10.0.0.1: 2 CPU, no GPU" in problem
    assert "Fix:" in problem


def test_more_gpu_workers_than_shares_is_an_error_naming_the_room() -> None:
    spec = _spec(gpu=GpuRequest("T4", split=2))
    options = actor_options(spec)
    assert infeasibility(spec, 2, options, CLUSTER) is None
    problem = infeasibility(spec, 3, options, CLUSTER)
    assert problem is not None
    assert "workers=3" in problem
    assert "room for 2" in problem
    assert "workers=2" in problem  # the fix


def test_a_functions_workers_are_spread_over_the_nodes_whatever_else_runs() -> None:
    head, node2 = "id-10.0.0.1", "id-10.0.0.2"
    options = actor_options(_spec())
    assert spread_node(options, CLUSTER, siblings=[]) == head  # (Ray's order breaks ties)
    assert spread_node(options, CLUSTER, siblings=[head]) == node2
    assert spread_node(options, CLUSTER, siblings=[head, node2]) == head
    # Other functions' workers only break ties: this function's come first.
    assert spread_node(options, CLUSTER, siblings=[head], others=[node2] * 5) == node2
    assert spread_node(options, CLUSTER, siblings=[], others=[head]) == node2


def test_spreading_keeps_to_the_nodes_that_can_hold_the_worker() -> None:
    gpu = actor_options(_spec(gpu=GpuRequest("T4", split=2)))
    assert spread_node(gpu, CLUSTER, siblings=["id-10.0.0.2"]) == "id-10.0.0.2"
    dead = [CLUSTER[0], {**CLUSTER[1], "Alive": False}]
    assert spread_node(actor_options(_spec()), dead, siblings=["id-10.0.0.1"]) == "id-10.0.0.1"
    assert spread_node(gpu, dead, siblings=[]) is None  # (Ray says why it waits)


def test_dead_nodes_do_not_count() -> None:
    spec = _spec(gpu=GpuRequest("T4"))
    dead = [CLUSTER[0], {**CLUSTER[1], "Alive": False}]
    assert infeasibility(spec, 1, actor_options(spec), dead) is not None


def test_a_custom_resource_no_node_has_is_an_error() -> None:
    spec = _spec()
    options = actor_options(spec, {"resources": {"high-mem": 1}})
    problem = infeasibility(spec, 1, options, CLUSTER)
    assert problem is not None
    assert problem.startswith("ray_actor_options: ")
    assert "high-mem=1" in problem
    assert "resources head" in problem  # what the nodes offer
    assert infeasibility(spec, 1, actor_options(spec, {"resources": {"node2": 1}}), CLUSTER) is None


# -- settings ----------------------------------------------------------------------------------


@pytest.fixture
def restore_config() -> Iterator[None]:
    saved = dataclasses.replace(sieve.config)
    yield
    for item in dataclasses.fields(Config):
        setattr(sieve.config, item.name, getattr(saved, item.name))


@pytest.mark.usefixtures("restore_config")
@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"ray_address": ""}, "ray_address"),
        ({"ray_address": 10001}, "ray_address"),
        ({"ray_actor_options": ["num_cpus"]}, "ray_actor_options"),
        ({"ray_actor_options": {"num_gpus": 1}}, "ray_actor_options"),
        ({"ray_actor_options": {"max_restarts": 3}}, "ray_actor_options"),
        ({"ray_actor_options": {"num_cpus": -1}}, "ray_actor_options.num_cpus"),
        ({"ray_actor_options": {"memory": "2GB"}}, "ray_actor_options.memory"),
        ({"ray_actor_options": {"resources": {"a": 0}}}, "ray_actor_options.resources"),
        ({"ray_actor_options": {"runtime_env": "img"}}, "ray_actor_options.runtime_env"),
        ({"ray_image_registry": ""}, "ray_image_registry"),
        ({"ray_image_registry": 5000}, "ray_image_registry"),
        ({"ray_image_registry": "https://registry.example.com"}, "ray_image_registry"),
        ({"ray_image_registry": "registry.example.com/ml/model:1"}, "ray_image_registry"),
        ({"ray_image_registry": "registry.example.com/ml@sha256:ab"}, "ray_image_registry"),
        ({"ray_image_registry": "registry.example.com/ml/"}, "ray_image_registry"),
        ({"ray_working_dir": "/no/such/folder"}, "ray_working_dir"),
        ({"ray_working_dir": 3}, "ray_working_dir"),
        (
            {"ray_actor_options": {"runtime_env": {"working_dir": "."}}},
            "ray_actor_options.runtime_env.working_dir",
        ),
    ],
)
def test_bad_ray_settings_name_the_field_and_change_nothing(
    settings: dict[str, Any], field: str
) -> None:
    before = dataclasses.replace(sieve.config)
    with pytest.raises(ConfigurationError) as caught:
        sieve.configure(backend="ray", **settings)
    assert str(caught.value).startswith(f"{field}: ")
    assert "Fix" in str(caught.value)
    assert sieve.config == before


@pytest.mark.usefixtures("restore_config")
def test_good_ray_settings_are_kept() -> None:
    sieve.configure(
        backend="ray",
        ray_address="ray://head:10001",
        ray_actor_options={"num_cpus": 0.5, "resources": {"node2": 1}},
        ray_image_registry="127.0.0.1:5000/ml",
    )
    sieve.configure(
        ray_working_dir=".",
        ray_actor_options={"runtime_env": {"working_dir": "s3://bucket/project.zip"}},
    )
    assert sieve.config.ray_working_dir == "."
    assert sieve.config.ray_image_registry == "127.0.0.1:5000/ml"
    assert sieve.config.backend == "ray"
    assert sieve.config.ray_address == "ray://head:10001"
