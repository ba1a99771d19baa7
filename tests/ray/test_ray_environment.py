"""How a spec's environment and GPU request land on a real Ray cluster: placement by Ray's own
scheduler (the tier's node2 declares one fake T4), Env values that reach the worker but never
Ray's records or logs, pip packages installed through the actor's runtime_env, and what the
backend cannot honour, reported once."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from ray_tier import RayCluster
from support import Unique, wait_for

import sieve_jupyter as sieve
from sieve_jupyter.manager import get_manager


def _node_id(label: str) -> str:
    """The id of the tier's node that declares the resource `label`."""
    import ray

    (node,) = [n for n in ray.nodes() if n["Alive"] and label in n["Resources"]]
    node_id: str = node["NodeID"]
    return node_id


def test_env_values_reach_the_worker_but_no_record_or_log_of_ray(
    unique: Unique, ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"sk-{os.urandom(12).hex()}"
    monkeypatch.setenv("SIEVE_RAY_TEST_SECRET", secret)

    @sieve.function(
        name=unique("peek"),
        backend="ray",
        environment_variables=[sieve.Env("SIEVE_RAY_TEST_SECRET")],
    )
    def peek() -> dict[str, str]:
        import hashlib

        import ray

        print("the worker runs")  # (its output goes to the job, not to Ray's logs)
        # (a digest: the job's result itself is the user's data, kept until the kernel has it)
        value = os.environ.get("SIEVE_RAY_TEST_SECRET", "")
        return {
            "digest": hashlib.sha256(value.encode()).hexdigest(),
            "runtime_env": json.dumps(dict(ray.get_runtime_context().runtime_env)),
        }

    seen = peek.run()
    assert seen["digest"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in seen["runtime_env"]
    assert secret not in json.dumps(get_manager().record(peek.name).spec.to_dict())
    leaked = [
        path
        for path in Path(ray_cluster.root).rglob("*")
        if path.is_file() and not path.is_symlink() and secret.encode() in _read(path)
    ]
    assert leaked == []


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # (a socket, or a file removed meanwhile)
        return b""


def test_a_gpu_split_places_each_worker_on_a_share_of_the_t4(unique: Unique) -> None:
    @sieve.function(name=unique("on-t4"), backend="ray", gpu=sieve.gpu.T4(split=2), workers=2)
    def where() -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {
            "node": context.get_node_id(),
            "resources": context.get_assigned_resources(),
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    seen = where.run()
    assert seen["node"] == _node_id("node2")
    assert seen["resources"]["GPU"] == 0.5
    assert seen["cuda"] == "0"  # (Ray hands the worker the card's share)
    pool = get_manager().record(where.name).pool
    assert pool is not None
    wait_for(lambda: len(pool.live_workers()) == 2, timeout=120)
    described = pool.describe()
    assert {w["node_id"] for w in described} == {_node_id("node2")}
    assert len({w["actor_id"] for w in described}) == 2


def test_an_unsatisfiable_gpu_request_fails_before_any_job_is_queued(unique: Unique) -> None:
    before = len(get_manager().jobs())

    @sieve.function(
        name=unique("three-halves"), backend="ray", gpu=sieve.gpu.T4(split=2), workers=3
    )
    def three() -> int:
        return 3

    with pytest.raises(sieve.GpuUnavailableError) as caught:
        three.push()
    assert "workers=3" in str(caught.value) and "room for 2" in str(caught.value)

    @sieve.function(name=unique("on-a100"), backend="ray", gpu=sieve.gpu.A100())
    def a100() -> int:
        return 1

    with pytest.raises(sieve.GpuUnavailableError) as caught:
        a100.run()
    message = str(caught.value)
    assert "A100" in message
    assert "1 GPU (T4)" in message  # what the cluster has
    assert len(get_manager().jobs()) == before


def test_what_the_backend_cannot_honour_is_reported_once(unique: Unique) -> None:
    @sieve.function(
        name=unique("apt"),
        backend="ray",
        system_packages=["ffmpeg"],
        run_commands=["echo built"],
    )
    def twice(x: int) -> int:
        return 2 * x

    with pytest.warns(sieve.SieveWarning) as caught:
        assert twice.run(2) == 4
    (warning,) = caught
    assert "system_packages ['ffmpeg']" in str(warning.message)
    assert "run_commands ['echo built']" in str(warning.message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert twice.push(3).result(timeout=60) == 6


def test_python_packages_are_installed_by_the_actors_runtime_env(unique: Unique) -> None:
    # (the cluster's environment has Ray and the core dependencies only: not this package)
    @sieve.function(name=unique("pip"), backend="ray", python_packages=["six==1.17.0"])
    def version() -> str:
        import six

        return str(six.__version__)

    assert version.run() == "1.17.0"
