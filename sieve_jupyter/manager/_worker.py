"""The kernel's side of one worker: start it, authenticate it, and read what it says.

A `WorkerConnection` owns the worker's private IPC directory, the listening socket the worker
connects back to, the three channels (data, control and reply), and a reader thread that turns
the worker's messages on the data channel into calls on its `WorkerPool`. It never sends on the
data channel from the reader thread: the pool's sender does, so a worker that is busy writing
results can never deadlock against a kernel that is busy writing calls. The reply channel has
no reader thread: whoever holds `lane` (a thread making a direct call) reads it.
"""

from __future__ import annotations

import collections
import enum
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sieve_jupyter._errors import BackendError, PythonVersionMismatchError
from sieve_jupyter.backends import GpuAssignment, WorkerLaunch, WorkerProcess
from sieve_jupyter.manager._messages import handle_message, handle_results
from sieve_jupyter.runtime.protocol import (
    AuthenticationError,
    Channel,
    ChannelClosed,
    authenticate_server,
)

if TYPE_CHECKING:
    from sieve_jupyter.manager._jobs import JobFuture
    from sieve_jupyter.manager._pool import WorkerPool

__all__ = ["WorkerConnection", "WorkerState"]


class WorkerState(str, enum.Enum):
    STARTING = "starting"  # process launched, not yet connected
    SETUP = "setup"  # connected, running __setup__
    READY = "ready"  # warm, serving calls
    RETIRING = "retiring"  # told to stop or restarting after an error; takes no new calls
    EXITED = "exited"


def _ipc_root() -> str:
    # Unix socket paths are limited to ~107 bytes: keep the directory short.
    root = tempfile.gettempdir()
    return root if len(root) < 60 else "/tmp"


class WorkerConnection:
    """One worker process and the kernel's channels to it."""

    def __init__(self, pool: WorkerPool, worker_id: str, gpu: GpuAssignment | None) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.gpu = gpu
        self.state = WorkerState.STARTING
        self.process: WorkerProcess | None = None
        self.data: Channel | None = None
        self.control: Channel | None = None
        self.reply: Channel | None = None
        #: held by the one thread making a direct call to this worker, until its outcome is read
        self.lane = threading.Lock()
        self.pid: int | None = None
        self.started_at = time.time()
        self.setup_seconds: float | None = None
        self.setup_at: float | None = None
        #: jobs sent to (or queued for) this worker and not finished, in dispatch order
        self.inflight: dict[str, JobFuture] = {}
        self.running_job: str | None = None
        #: the job of the direct call in progress (see _direct.py), if any
        self.direct_job: str | None = None
        #: jobs assigned by the pool and waiting to be written to the data channel
        self.outbox: collections.deque[JobFuture] = collections.deque()
        #: job ids of each frame of calls written to the worker, oldest first (trimmed as
        #: frames complete); names the jobs of a frame the worker could not unpickle
        self.frames: collections.deque[list[str]] = collections.deque()
        self.send_lock = threading.Lock()
        #: the exit was asked for (stop, restart after an error): no job is blamed for it
        self.exit_expected = False
        self.ipc_dir = Path(tempfile.mkdtemp(prefix="sj-", dir=_ipc_root()))
        self._listener: socket.socket | None = None

    # -- startup (runs on a starter thread) --------------------------------------------------

    def launch(self, env: dict[str, str], labels: dict[str, str], timeout: float) -> None:
        """Start the process, accept its three connections and send it the code to load.

        Raises:
            BackendError: the worker did not connect (its boot log is in the message).
            PythonVersionMismatchError: the worker's Python cannot unpickle the kernel's code.
        """
        secret = os.urandom(32)
        key = self.ipc_dir / "key"
        key.write_bytes(secret)
        # mkdtemp made the directory 0700: only the kernel's user (and root in a container,
        # which gets it bind-mounted) can reach the key and the socket.
        os.chmod(key, 0o600)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.ipc_dir / "sock"))
        listener.listen(3)
        self._listener = listener
        launch = WorkerLaunch(
            spec=self.pool.spec,
            worker_id=self.worker_id,
            ipc_dir=self.ipc_dir,
            env=env,
            gpu=self.gpu,
            labels=labels,
        )
        self.process = self.pool.backend.start_worker(launch)
        self.data = self._accept(secret, timeout)
        hello = self.data.recv()
        _, _, version, pid = hello
        self.pid = pid
        if tuple(version[:2]) != sys.version_info[:2]:
            raise PythonVersionMismatchError(
                f"worker {self.worker_id} runs Python {version[0]}.{version[1]} but the kernel "
                f"runs {sys.version_info[0]}.{sys.version_info[1]}; code travels by value "
                "(cloudpickle), which needs the same minor version. Fix: use a worker image or "
                "interpreter with the kernel's Python version."
            )
        self.control = self._accept(secret, timeout)
        self.control.recv()  # ("control", worker_id)
        self.reply = self._accept(secret, timeout)
        self.reply.recv()  # ("reply", worker_id)
        listener.close()
        self._listener = None
        # Nothing uses the directory by name once the worker is connected (the boot log is
        # read only while it connects; open files live on): removing it now, key included,
        # leaves nothing behind even when this process is killed without running any cleanup.
        shutil.rmtree(self.ipc_dir, ignore_errors=True)
        self.state = WorkerState.SETUP
        threading.Thread(
            target=self._read_loop, name=f"sieve-reader-{self.worker_id}", daemon=True
        ).start()
        self.data.send(("load", self.pool.payload, self.pool.load_options()))

    def _accept(self, secret: bytes, timeout: float) -> Channel:
        assert self._listener is not None and self.process is not None
        deadline = time.monotonic() + timeout
        self._listener.settimeout(0.1)
        while True:
            try:
                sock, _ = self._listener.accept()
                break
            except TimeoutError:
                code = self.process.poll()
                if code is not None:
                    raise BackendError(
                        f"worker {self.worker_id} ({self.process.description}) exited with code "
                        f"{code} before connecting.{self._boot_log_tail()}"
                    ) from None
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"worker {self.worker_id} did not connect within {timeout:.0f} s."
                        f"{self._boot_log_tail()}"
                    ) from None
        sock.settimeout(timeout)
        try:
            authenticate_server(sock, secret)
        except (AuthenticationError, OSError) as exc:
            sock.close()
            raise BackendError(f"worker {self.worker_id} failed authentication: {exc}") from exc
        sock.settimeout(None)
        return Channel(sock)

    def _boot_log_tail(self) -> str:
        log = self.ipc_dir / "boot.log"
        try:
            text = log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""
        return f"\nIts output:\n{text}" if text.strip() else ""

    # -- reading -----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        data = self.data
        assert data is not None
        pool = self.pool
        try:
            while True:
                message = data.recv()
                if message[0] == "result" and data.pending():
                    # A burst of results already here: settle them in one round (one lock
                    # round in the pool), then whatever message ended the burst.
                    message = handle_results(pool, self, message, data)
                    if message is None:
                        continue
                handle_message(pool, self, message)
        except ChannelClosed:
            pass
        except Exception as exc:  # noqa: BLE001 - a protocol bug must still free the jobs
            self.pool.note_protocol_error(self, exc)
        self.pool.worker_exited(self)

    # -- control -----------------------------------------------------------------------------

    def sent_frame(self, job_ids: list[str]) -> None:
        """Record a frame of calls just written (send lock held, so in channel order)."""
        frames = self.frames
        while frames and not any(j in self.inflight for j in frames[0]):
            frames.popleft()
        frames.append(job_ids)

    def oldest_unfinished_frame(self) -> list[str]:
        """The jobs of the oldest frame that still has unfinished jobs: the worker handles
        frames in order, so that is the one it just failed to read."""
        for job_ids in self.frames:
            unfinished = [j for j in job_ids if j in self.inflight]
            if unfinished:
                return unfinished
        return []

    def send_control(self, message: Any) -> None:
        if self.control is None:
            return
        try:
            self.control.send(message)
        except ChannelClosed:
            pass

    def exit_code(self, wait: float = 1.0) -> int | None:
        if self.process is None:
            return None
        deadline = time.monotonic() + wait
        while True:
            code = self.process.poll()
            if code is not None or time.monotonic() > deadline:
                return code
            time.sleep(0.01)

    def terminate(self, grace: float = 2.0) -> None:
        """Stop the worker and remove its IPC directory. Safe to call more than once."""
        self.exit_expected = True
        self.send_control(("shutdown",))
        if self.process is not None:
            self.process.terminate(grace)
        self.close_channels()

    def close_channels(self) -> None:
        for channel in (self.data, self.control, self.reply):
            if channel is not None:
                channel.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        shutil.rmtree(self.ipc_dir, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        details = self.process.details() if self.process is not None else {}
        return {
            "id": self.worker_id,
            "state": self.state.value,
            "setup_seconds": self.setup_seconds,
            "setup_at": self.setup_at,
            "pid": self.pid,
            "description": self.process.description if self.process is not None else "",
            "inflight": len(self.inflight),
            "gpu": self.gpu.visible_devices if self.gpu is not None else None,
            **details,
        }
