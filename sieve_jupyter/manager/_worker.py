"""The kernel's side of one worker: its process, its three connections, its reader thread.

A `WorkerConnection` owns the worker's private IPC directory, the listening socket the worker
connects back to, the three channels (data, control and reply), its lifecycle state and its jobs
(`WorkerJobs`), and a reader thread that hands each message on the data connection to
`_messages.handle`. The reader never writes calls itself: the pool's threads do, so a worker busy
writing results can never deadlock against a kernel busy writing calls. The reply channel has no
reader thread: whoever holds `lane` (a thread making a direct call) reads it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sieve_jupyter._errors import BackendError, PythonVersionMismatchError
from sieve_jupyter.backends import GpuAssignment, WorkerLaunch, WorkerProcess
from sieve_jupyter.manager import _messages
from sieve_jupyter.manager._affinity import CallerCpu
from sieve_jupyter.manager._worker_base import Worker, WorkerState
from sieve_jupyter.runtime.messages import (
    Hello,
    Load,
    Message,
    Result,
    Shutdown,
    Swap,
    pack,
    unpack,
)
from sieve_jupyter.runtime.protocol import (
    AuthenticationError,
    Channel,
    ChannelClosed,
    ShmLink,
    authenticate_server,
    share_with_worker,
)

if TYPE_CHECKING:
    from sieve_jupyter.manager._pool import WorkerPool

__all__ = ["WorkerConnection", "WorkerState", "describe_exit"]


def _ipc_root() -> str:
    # Unix socket paths are limited to ~107 bytes: keep the directory short.
    root = tempfile.gettempdir()
    return root if len(root) < 60 else "/tmp"


class WorkerConnection(Worker):
    """One worker process and the kernel's channels to it."""

    direct_calls = True

    def __init__(self, pool: WorkerPool, worker_id: str, gpu: GpuAssignment | None) -> None:
        super().__init__(pool, worker_id, gpu)
        self.process: WorkerProcess | None = None
        self.data: Channel | None = None
        self.control: Channel | None = None
        self.reply: Channel | None = None
        self.ipc_dir = Path(tempfile.mkdtemp(prefix="sj-", dir=_ipc_root()))
        self._listener: socket.socket | None = None
        #: the worker's Hello (its view of the filesystem, whether it can share memory)
        self.hello: Hello | None = None
        #: the memory shared with the worker (large buffers), None if either end cannot
        self.link: ShmLink | None = None
        #: where the worker runs while it answers a quick direct call (None: left to the
        #: system; see _affinity.py)
        self.cpu: CallerCpu | None = None
        #: when (`time.perf_counter`) the worker last answered a direct call: it polls for
        #: its next call for a moment afterwards (see `_direct._follow_caller`)
        self.answered_at = 0.0

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
        self.process = self.pool.backend.start_worker(
            WorkerLaunch(
                spec=self.pool.spec,
                worker_id=self.worker_id,
                ipc_dir=self.ipc_dir,
                env=env,
                gpu=self.gpu,
                labels=labels,
            )
        )
        pid = self.process.host_pid
        if pid is not None and self.pool.host.config.follow_caller:
            self.cpu = CallerCpu(pid)
        self.data = self._accept(secret, timeout, "data")
        self.control = self._accept(secret, timeout, "control")
        self.reply = self._accept(secret, timeout, "reply")
        listener.close()
        self._listener = None
        # Nothing uses the directory by name once the worker is connected (the boot log is
        # read only while it connects; open files live on): removing it now, key included,
        # leaves nothing behind even when this process is killed without running any cleanup.
        shutil.rmtree(self.ipc_dir, ignore_errors=True)
        with self.pool.lock:
            self.move_to(WorkerState.SETUP)
        options = self.pool.load_options()
        assert self.hello is not None
        self.link = share_with_worker(
            self.hello, [self.data, self.control, self.reply], self.control, options
        )
        threading.Thread(
            target=self._read_loop, name=f"sieve-reader-{self.worker_id}", daemon=True
        ).start()
        self.data.send(pack(Load(self.pool.payload, options)))

    def _accept(self, secret: bytes, timeout: float, connection: str) -> Channel:
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
            channel = Channel(sock)
            hello = unpack(channel.recv())
        except (AuthenticationError, OSError, ValueError) as exc:
            sock.close()
            raise BackendError(f"worker {self.worker_id} failed authentication: {exc}") from exc
        sock.settimeout(None)
        if not isinstance(hello, Hello) or hello.connection != connection:
            channel.close()
            raise BackendError(f"worker {self.worker_id}: expected its {connection} connection")
        if tuple(hello.python[:2]) != sys.version_info[:2]:
            channel.close()
            raise PythonVersionMismatchError(
                f"worker {self.worker_id} runs Python {hello.python[0]}.{hello.python[1]} but "
                f"the kernel runs {sys.version_info[0]}.{sys.version_info[1]}; code travels by "
                "value (cloudpickle), which needs the same minor version. Fix: use a worker "
                "image or interpreter with the kernel's Python version."
            )
        self.pid = hello.pid
        self.hello = hello
        return channel

    def _boot_log_tail(self) -> str:
        log = self.ipc_dir / "boot.log"
        try:
            text = log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""
        return f"\nIts output:\n{text}" if text.strip() else ""

    # -- reading (the reader thread) ---------------------------------------------------------

    def _read_loop(self) -> None:
        data = self.data
        assert data is not None
        try:
            while True:
                message = unpack(data.recv())
                if type(message) is Result and data.shared:
                    self.shared_results.add(message.job)
                if type(message) is Result and data.pending():
                    # A burst of results already here: settle them in one round (one lock
                    # round in the pool), then whatever message ended the burst.
                    following = self._read_results(message, data)
                    if following is None:
                        continue
                    message = following
                _messages.handle(self.pool, self, message)
                # (not kept while the next one is awaited: a result's buffers may be shared
                # memory, which goes back to the worker once nothing refers to it)
                del message
        except ChannelClosed:
            pass
        except Exception as exc:  # noqa: BLE001 - a protocol bug must still free the jobs
            self.pool.note_protocol_error(exc)
        if self.cpu is not None:
            self.cpu.stop()  # (before the process is reaped: see CallerCpu.stop)
        self.pool.worker_exited(self)

    def _read_results(self, first: Result, data: Channel) -> Message | None:
        """Settle `first` and the results right behind it that are already buffered, together.
        Returns the message that ended the run of results, if one was read."""
        results = [first]
        following: Message | None = None
        try:
            while data.pending():
                message = unpack(data.recv())
                if type(message) is not Result:
                    following = message
                    break
                if data.shared:
                    self.shared_results.add(message.job)
                results.append(message)
        finally:  # (also when the worker died mid-frame: what arrived whole still counts)
            self.pool.jobs_done(self, results)
        return following

    # -- control -----------------------------------------------------------------------------

    def send_control(self, message: Message) -> None:
        """Send on the control connection (cancels, replies); a gone worker is ignored."""
        if self.control is None:
            return
        try:
            self.control.send(pack(message))
        except ChannelClosed:
            pass

    def send_swap(self, swap: int, payload: bytes, sources: dict[str, list[str]]) -> None:
        with self.send_lock:
            if self.data is None:
                raise ChannelClosed("not connected")
            self.data.send(pack(Swap(swap, payload, sources)))

    def exit_reason(self, wait: float) -> str:
        return describe_exit(self.exit_code(wait))

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
        if self.cpu is not None:
            self.cpu.stop()
        self.send_control(Shutdown())
        if self.process is not None:
            self.process.terminate(grace)
        self.close_channels()

    def close_channels(self) -> None:
        for channel in (self.data, self.control, self.reply):
            if channel is not None:
                channel.close()
        if self.link is not None:
            self.link.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        shutil.rmtree(self.ipc_dir, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        details = self.process.details() if self.process is not None else {}
        return {
            **self._describe_base(),
            "description": self.process.description if self.process is not None else "",
            **details,
        }


def describe_exit(code: int | None) -> str:
    """A process's exit status in words, e.g. ``"killed by SIGKILL"``."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " — often the out-of-memory killer" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"
