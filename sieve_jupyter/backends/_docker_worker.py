"""One worker container: how it is configured, and a handle that records its exit code, keeps
its output in the boot log and removes it once it has exited."""

from __future__ import annotations

import math
import os
import re
import threading
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from sieve_jupyter.backends._base import WORKER_MODULE, WorkerLaunch, WorkerProcess
from sieve_jupyter.backends._docker_options import DockerOptions
from sieve_jupyter.backends._docker_owner import MANAGED_LABEL, OWNER_LABEL
from sieve_jupyter.build import IPC_MOUNT, LABEL_PREFIX, RUNTIME_MOUNT, SRC_MOUNT, VENV_PYTHON

__all__ = ["DockerWorker", "container_settings", "remove_container"]

_NAME_SAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def container_settings(
    launch: WorkerLaunch, image: str, options: DockerOptions, owner_label: str
) -> dict[str, Any]:
    """The ``containers.create`` arguments for one worker (pure: no engine call).

    The IPC directory, this package (read-only), the source folder and the spec's `mounts` are
    bind-mounted; the container runs as the kernel's uid:gid so the private socket directory is
    reachable; a GPU worker gets a device request for exactly its assigned cards.
    """
    spec = launch.spec
    package_dir = Path(__file__).resolve().parents[1]  # sieve_jupyter/
    mounts = [
        docker.types.Mount(IPC_MOUNT, str(launch.ipc_dir), type="bind"),
        docker.types.Mount(
            f"{RUNTIME_MOUNT}/sieve_jupyter", str(package_dir), type="bind", read_only=True
        ),
    ]
    src = os.getcwd() if options.src_dir is None else options.src_dir
    if src:
        mounts.append(docker.types.Mount(SRC_MOUNT, str(Path(src).resolve()), type="bind"))
    for text in options.mounts:
        host, target, read_only = DockerOptions.parse_mount(text)
        mounts.append(docker.types.Mount(target, host, type="bind", read_only=read_only))
    # what the function reads from the host (a model.yaml's checkout and files), at the same
    # path so the paths the worker was given stay valid
    for text in spec.mounts:
        path = text.removesuffix(":ro")
        mounts.append(docker.types.Mount(path, path, type="bind", read_only=path != text))
    env = dict(launch.env)
    env["PYTHONPATH"] = f"{RUNTIME_MOUNT}:{SRC_MOUNT}"
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        env.setdefault("HOME", "/tmp")  # the kernel's user has no home in the image
    device_requests = None
    if launch.gpu is not None:
        # inside the container the assigned cards are renumbered from 0
        env.pop("CUDA_VISIBLE_DEVICES", None)
        ids = launch.gpu.device_uuids or tuple(str(i) for i in launch.gpu.device_indexes)
        device_requests = [
            docker.types.DeviceRequest(
                driver="nvidia", device_ids=list(ids), capabilities=[["gpu"]]
            )
        ]
    labels = {
        **dict(options.extra_labels),
        **dict(launch.labels),
        MANAGED_LABEL: "1",
        OWNER_LABEL: owner_label,
        f"{LABEL_PREFIX}.function": spec.name,
        f"{LABEL_PREFIX}.worker": launch.worker_id,
        f"{LABEL_PREFIX}.environment-hash": spec.environment.content_hash(),
    }
    return {
        "image": image,
        "command": [
            VENV_PYTHON,
            "-m",
            WORKER_MODULE,
            "--dir",
            IPC_MOUNT,
            "--worker-id",
            launch.worker_id,
        ],  # fmt: skip
        "name": _NAME_SAFE.sub("-", f"sieve-{spec.name}-{launch.worker_id}-{os.getpid()}"),
        "environment": env,
        "mounts": mounts,
        "working_dir": SRC_MOUNT if src else None,
        "user": f"{uid}:{gid}",
        "labels": labels,
        "network_mode": options.network_mode,
        "init": True,  # signals reach the worker (it is not PID 1)
        "device_requests": device_requests,
        "detach": True,
    }


def _exit_code(status: int) -> int:
    # docker-init reports a worker killed by signal N as 128+N; WorkerProcess wants -N.
    return -(status - 128) if 128 < status < 128 + 65 else status


class DockerWorker(WorkerProcess):
    """One worker container. A watcher thread copies its output to the boot log, records its
    exit code and removes it, so an exited worker leaves nothing behind."""

    def __init__(self, client: docker.DockerClient, container_id: str, name: str, image: str,
                 boot_log: Path) -> None:  # fmt: skip
        self._api = client.api
        self.container_id = container_id
        self.name = name
        self.image = image
        self._boot_log = boot_log
        self._code: int | None = None
        self._done = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch, name=f"sieve-docker-{container_id[:12]}", daemon=True
        )
        self._watcher.start()

    @property
    def description(self) -> str:
        return f"container {self.container_id[:12]}"

    def _watch(self) -> None:
        try:
            try:
                with open(self._boot_log, "ab", buffering=0) as out:
                    for chunk in self._api.logs(self.container_id, stream=True, follow=True):
                        out.write(chunk)
            except OSError:
                pass  # the IPC directory was removed by the manager: the output has no reader
            status = self._api.wait(self.container_id, timeout=None)
            self._code = _exit_code(int(status.get("StatusCode", -1)))
        except Exception:  # noqa: BLE001 - engine gone or container removed: report a death
            self._code = -1 if self._code is None else self._code
        finally:
            self._remove()
            self._done.set()

    def _remove(self) -> None:
        remove_container(self._api, self.container_id)

    def poll(self) -> int | None:
        return self._code if self._done.is_set() else None

    def terminate(self, grace: float = 2.0) -> None:
        if not self._done.is_set():
            try:
                self._api.stop(self.container_id, timeout=max(0, math.ceil(grace)))
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                self._remove()
        self._done.wait(timeout=grace + 10)
        if not self._done.is_set():
            self._remove()

    def state(self) -> str:
        """The engine's view: ``running``, ``exited``, ... or ``removed``."""
        if self._done.is_set():
            return "removed"
        try:
            info = self._api.inspect_container(self.container_id)
        except docker.errors.NotFound:
            return "removed"
        return str(info["State"]["Status"])

    def details(self) -> dict[str, Any]:
        return {
            "container": self.container_id[:12],
            "container_name": self.name,
            "container_state": self.state(),
            "image": self.image,
        }


def remove_container(api: Any, container_id: str) -> bool:
    """Remove a container (stopping it first); False if it is gone already or another
    process is removing it (a reaping kernel, the watcher of another worker)."""
    try:
        api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise
        return False
    return True
