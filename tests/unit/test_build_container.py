"""How a worker container is configured (no engine needed): mounts, user, env, GPUs, labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("docker")

from sieve_jupyter.backends import GpuAssignment, WorkerLaunch  # noqa: E402
from sieve_jupyter.backends._docker_options import DockerOptions  # noqa: E402
from sieve_jupyter.backends._docker_worker import container_settings  # noqa: E402
from sieve_jupyter.spec import FunctionSpec  # noqa: E402


def settings(tmp_path: Path, **launch: Any) -> dict[str, Any]:
    options = launch.pop("options", DockerOptions(network_mode="none", src_dir=str(tmp_path)))
    the_launch = WorkerLaunch(
        spec=FunctionSpec(name="whisper"), worker_id="w3", ipc_dir=tmp_path / "ipc", **launch
    )
    return container_settings(the_launch, "sieve-jupyter-env:abc", options, "host/boot/1/2")


def mounts_by_target(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["Target"]: m for m in config["mounts"]}


def test_socket_dir_runtime_and_source_are_mounted(tmp_path: Path) -> None:
    config = settings(tmp_path)
    mounts = mounts_by_target(config)
    assert mounts["/run/sieve"]["Source"] == str(tmp_path / "ipc")
    assert not mounts["/run/sieve"]["ReadOnly"]
    runtime = mounts["/opt/sieve/lib/sieve_jupyter"]
    assert runtime["ReadOnly"] and Path(runtime["Source"], "runtime", "worker.py").exists()
    assert mounts["/src"]["Source"] == str(tmp_path.resolve())
    assert config["working_dir"] == "/src"
    assert config["command"][:3] == [
        "/opt/sieve/venv/bin/python",
        "-m",
        "sieve_jupyter.runtime.worker",
    ]
    assert config["command"][3:] == ["--dir", "/run/sieve", "--worker-id", "w3"]
    assert config["environment"]["PYTHONPATH"] == "/opt/sieve/lib:/src"


def test_extra_mounts_and_no_source_mount(tmp_path: Path) -> None:
    options = DockerOptions(src_dir="", mounts=("/data:/in:ro",))
    mounts = mounts_by_target(settings(tmp_path, options=options))
    assert "/src" not in mounts
    assert mounts["/in"]["Source"] == "/data" and mounts["/in"]["ReadOnly"]


def test_the_specs_host_paths_are_mounted_at_the_same_path(tmp_path: Path) -> None:
    checkout, weights = tmp_path / "checkout", tmp_path / "weights.pt"
    spec = FunctionSpec(name="yolor", mounts=(f"{checkout}:ro", str(weights)))
    launch = WorkerLaunch(spec=spec, worker_id="w1", ipc_dir=tmp_path / "ipc")
    options = DockerOptions(network_mode="none", src_dir="")
    mounts = mounts_by_target(container_settings(launch, "img:1", options, "host/boot/1/2"))
    assert mounts[str(checkout)]["Source"] == str(checkout) and mounts[str(checkout)]["ReadOnly"]
    assert mounts[str(weights)]["Source"] == str(weights)
    assert not mounts[str(weights)]["ReadOnly"]


def test_runs_as_the_kernel_user_with_its_env_and_network(tmp_path: Path) -> None:
    config = settings(tmp_path, env={"API_KEY": "k"})
    assert config["user"] == f"{os.getuid()}:{os.getgid()}"
    assert config["environment"]["API_KEY"] == "k"
    assert config["network_mode"] == "none"
    assert config["init"] is True


def test_labels_carry_kernel_function_owner_and_environment(tmp_path: Path) -> None:
    labels = settings(tmp_path, labels={"sieve-jupyter.kernel": "k-1"})["labels"]
    assert labels["sieve-jupyter.kernel"] == "k-1"
    assert labels["io.sieve-jupyter.function"] == "whisper"
    assert labels["io.sieve-jupyter.owner"] == "host/boot/1/2"
    assert labels["io.sieve-jupyter.managed"] == "1"
    assert labels["io.sieve-jupyter.environment-hash"] == FunctionSpec(name="x").environment_hash


def test_cpu_worker_asks_for_no_device(tmp_path: Path) -> None:
    assert settings(tmp_path)["device_requests"] is None


def test_gpu_worker_gets_exactly_its_cards_renumbered_inside(tmp_path: Path) -> None:
    config = settings(
        tmp_path, gpu=GpuAssignment((1,)), env={"CUDA_VISIBLE_DEVICES": "1", "X": "y"}
    )
    [request] = config["device_requests"]
    assert request["Driver"] == "nvidia"
    assert request["DeviceIDs"] == ["1"]
    assert request["Capabilities"] == [["gpu"]]
    # the host numbering means nothing inside: the container sees its card as device 0
    assert "CUDA_VISIBLE_DEVICES" not in config["environment"]


def test_split_workers_share_one_card_and_uuids_are_preferred(tmp_path: Path) -> None:
    card = GpuAssignment((0,), ("GPU-1234",))
    first = settings(tmp_path, gpu=card)["device_requests"][0]
    second = settings(tmp_path, gpu=card)["device_requests"][0]
    assert first["DeviceIDs"] == second["DeviceIDs"] == ["GPU-1234"]
