"""One worker container: its exit code, its output, and its removal once it has exited."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import docker
import docker.errors

from sieve_jupyter.backends._base import WorkerProcess

__all__ = ["DockerWorker"]


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
        try:
            self._api.remove_container(self.container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise

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
