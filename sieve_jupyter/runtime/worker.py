"""The worker process: load a function or model by value, run `__setup__` once, serve calls.

Started as ``python -m sieve_jupyter.runtime.worker --dir IPC_DIR --worker-id ID``. It opens three
authenticated connections to ``IPC_DIR/sock``: *data* (the kernel sends `Load`, `Call`, `Swap`,
`Shutdown`; the worker sends everything it has to say), *control* (the kernel sends `Cancel` and
`Reply`, read by their own thread so a cancel reaches a job while the main thread runs it, and
by the main thread before it starts a call, so a cancel waiting there is never overtaken) and
*reply*, which carries only the outcome of a direct call. The vocabulary is in
`runtime/messages.py`.

A direct call is a `.run()` that found this worker idle: a `Call` frame flagged `DIRECT_CALL`,
whose sender (the kernel thread that called `.run()`) waits on the reply connection itself. A
plain `Result` goes back there; anything else the job said (printed text, progress, an error)
goes on the data connection in order, followed by `Moved` on the reply connection, so printed
output is never overtaken by the value it came before.

Every message is written the moment it exists: a worker can die at any time (a segfault, the
out-of-memory killer), and what reached the socket still reaches the kernel, so no finished job's
result is lost and the kernel knows exactly which job was running.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from sieve_jupyter.runtime import _context, _files, _shm
from sieve_jupyter.runtime._loading import Loaded, load_code, swap_code
from sieve_jupyter.runtime._output import CapturedStream
from sieve_jupyter.runtime._tracebacks import error_info
from sieve_jupyter.runtime._types import FatalException
from sieve_jupyter.runtime.messages import (
    Call,
    Cancel,
    Cancelled,
    Error,
    Hello,
    Load,
    LoadOptions,
    Message,
    Moved,
    Output,
    Reply,
    Result,
    Shutdown,
    Skipped,
    Swap,
    Undecodable,
    pack,
    unpack,
)
from sieve_jupyter.runtime.protocol import (
    DIRECT_CALL,
    SLEEP_AFTER,
    Channel,
    ChannelClosed,
    ShmLink,
    UndecodableMessage,
    authenticate_client,
    join,
)

__all__ = ["main"]

_CANCEL_SIGNAL = signal.SIGUSR1


class _Interrupted(BaseException):
    """Raised inside user code when its job is cancelled (a BaseException so `except Exception`
    in user code does not swallow it)."""


class Worker:
    """Serves one function or model over its three connections."""

    def __init__(self, data: Channel, control: Channel, reply: Channel, worker_id: str) -> None:
        self.worker_id = worker_id
        self._data = data
        self._control = control
        self._reply = reply
        #: the job whose outcome goes on the reply connection (a direct call), if any
        self._direct: str | None = None
        #: something was sent on the data connection while the direct job ran
        self._spilled = False
        self._lock = threading.Lock()
        self._current: str | None = None
        self._interruptible = False
        #: the main thread is writing a frame: a cancel must wait until the frame is whole
        self._sending = False
        self._interrupt_after_send = False
        self._cancel_target: str | None = None
        self._cancelled: set[str] = set()
        self._target: Callable[..., Any] | None = None
        self._loaded: Loaded | None = None
        self._restart_on_error = True
        self._main_thread = threading.get_ident()
        self._streams: tuple[CapturedStream, ...] = ()
        #: held by the thread reading the control connection (see `_read_control`)
        self._control_lock = threading.Lock()

    # -- sending -----------------------------------------------------------------------------

    @property
    def current_job(self) -> str | None:
        return self._current

    def send(self, message: Message) -> None:
        """Send a message to the kernel on the data connection, now (see the module docstring).
        Exits if the kernel is gone."""
        if self._direct is not None:
            self._spilled = True
        on_main = threading.get_ident() == self._main_thread
        if on_main:
            self._sending = True
        try:
            try:
                self._send_or_fail_the_job(message)
            except ChannelClosed:
                os._exit(0)  # the kernel is gone; nothing left to serve
        finally:
            if on_main:
                self._sending = False
                if self._interrupt_after_send and self._interruptible:
                    self._interrupt_after_send = False
                    raise _Interrupted()

    def _send_or_fail_the_job(self, message: Message) -> None:
        try:
            self._data.send(pack(message))
        except ChannelClosed:
            raise
        except Exception as exc:  # noqa: BLE001 - pickling failed; nothing was written
            if not isinstance(message, (Result, Output)):
                raise
            # A user's value that cannot be pickled fails its own job; the worker and its warm
            # state carry on.
            what = "return value" if isinstance(message, Result) else "streamed output"
            error = TypeError(
                f"job {message.job}: its {what} cannot be sent back to the kernel "
                f"({type(exc).__name__}: {exc}). Fix: return picklable values (plain data, "
                "numpy arrays, sieve.File)."
            )
            error.__cause__ = exc
            self._data.send(pack(Error(message.job, error_info(error), False)))

    def _send_reply(self, message: Result | Moved) -> None:
        self._direct = None
        try:
            self._reply.send(pack(message))
        except ChannelClosed:
            os._exit(0)  # the kernel is gone

    def capture_output(self) -> None:
        """Send what user code prints to the kernel, tagged with the job that printed it."""
        self._streams = (
            CapturedStream("stdout", self.send, lambda: self._current),
            CapturedStream("stderr", self.send, lambda: self._current),
        )
        sys.stdout, sys.stderr = self._streams

    def _flush_streams(self) -> None:
        for stream in self._streams:
            stream.flush()

    # -- control thread ----------------------------------------------------------------------

    def control_loop(self) -> None:
        """Handle control messages as they arrive, so a cancel reaches a job while it runs.
        (This thread waits with a poller of its own: the channel's is used only by the thread
        holding `_control_lock`, see `_read_control`.)"""
        arrivals = _poller(self._control)
        while True:
            arrivals.poll()
            self._read_control()

    def _read_control(self) -> None:
        """Handle every control message that has arrived. The control thread does when one
        comes; the main thread too, before it starts a call that waited behind others (see
        `serve`), so a cancel sent while that call waited is seen first, however late the
        control thread gets to run. The lock makes them take turns, each message handled once."""
        with self._control_lock:
            while (message := self._next_control()) is not None:
                if isinstance(message, Cancel):
                    self._cancel(message.job)
                elif isinstance(message, Reply):
                    context = _context.current_context()
                    if context is not None:
                        context.resolve(message.request, message.ok, message.value)
                elif isinstance(message, Shutdown):
                    os._exit(0)

    def _next_control(self) -> Message | None:
        """The next control message if one has arrived, else None (lock held)."""
        try:
            if not self._control.has_input():
                return None
            return unpack(self._control.recv())
        except ChannelClosed:
            # The kernel died or dropped us: leave at once, even mid-job (no orphans).
            os._exit(0)

    def _cancel(self, job_id: str) -> None:
        with self._lock:
            if self._current == job_id:
                self._cancel_target = job_id
                signal.pthread_kill(self._main_thread, _CANCEL_SIGNAL)
            else:
                self._cancelled.add(job_id)

    def _on_cancel_signal(self, signum: int, frame: Any) -> None:
        if not self._interruptible or self._cancel_target != self._current:
            return
        if self._sending:
            # Raising inside a socket write would leave half a frame on the data connection
            # and corrupt it (the kernel would drop the worker): interrupt once it is out.
            self._interrupt_after_send = True
            return
        raise _Interrupted()

    # -- main thread -------------------------------------------------------------------------

    def serve(self) -> None:
        signal.signal(_CANCEL_SIGNAL, self._on_cancel_signal)
        data = self._data
        control_arrived = _poller(self._control).poll  # (this thread's own: see control_loop)
        while True:
            try:
                message = unpack(data.recv())
            except ChannelClosed:
                return
            except UndecodableMessage as exc:
                # A call whose arguments cannot be rebuilt here: that job fails, we carry on.
                direct = bool(data.flags & DIRECT_CALL)
                self.send(Undecodable(error_info(exc.__cause__ or exc), direct))
                if direct:  # its caller waits on the reply connection
                    self._send_reply(Moved(None))
                continue
            if data.flags & SLEEP_AFTER:
                data.sleep_next_wait()
            if isinstance(message, Call):
                if data.flags & DIRECT_CALL:
                    self._direct = message.job
                    self._spilled = False
                elif control_arrived(0) or self._control_lock.locked():
                    # The kernel may have cancelled this call after writing it, and that cancel
                    # may wait unread on the control connection (its thread not yet run, or
                    # still handling it): a call must not start before the cancels sent ahead
                    # of its start are seen. (Looked at in this order, nothing slips between:
                    # what the control thread takes off the socket, it handles holding the lock.)
                    self._read_control()
                self._run_call(*message)
            elif isinstance(message, Load):
                self._load(message.payload, message.options)
            elif isinstance(message, Swap):
                self._swap(message)
            elif isinstance(message, Shutdown):
                return
            # Not kept while the next frame is awaited: arguments may lease the kernel's
            # shared memory, which goes back to the kernel only once nothing refers to them.
            del message

    def _load(self, payload: bytes, options: LoadOptions) -> None:
        self._restart_on_error = options["restart_on_error"]
        # An idle worker polls for its next call a moment before sleeping (see Channel.spin).
        self._data.spin = options["busy_poll"]
        # Files this worker sends take their content along when the kernel cannot see them.
        by_content = options.get("files_by_content", False)
        self._data.files_by_content = self._reply.files_by_content = by_content
        if options.get("shared_memory", False) and _shm.available():
            # Large buffers cross through shared memory; its notices go on the data
            # connection, which the kernel always reads.
            link = ShmLink(keep_seconds=options.get("shm_keep_seconds"))
            join(link, [self._data, self._control, self._reply], notices=self._data)
        loaded, answer = load_code(payload, options)
        self._flush_streams()
        if loaded is None:  # (reported to the kernel, then we exit)
            self.send(answer)
            os._exit(3)
        self._loaded, self._target = loaded, loaded.target
        self.send(answer)

    def _swap(self, swap: Swap) -> None:
        """Hot reload: give the live instance the new class, keeping its `__setup__` state. If
        the new code does not load, the code this worker had keeps answering calls."""
        assert self._loaded is not None, "swap before load"
        answer = swap_code(self._loaded, swap.swap, swap.payload, swap.sources)
        self._target = self._loaded.target
        self.send(answer)

    def _run_call(self, job_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Run one call and report its outcome."""
        with self._lock:
            if job_id in self._cancelled:
                self._cancelled.discard(job_id)
                self._report(Skipped(job_id))
                return
            self._current = job_id
        target = self._target
        assert target is not None, "call before load"
        started = time.time()
        try:
            self._interruptible = True
            try:
                value = target(*args, **kwargs)
                if type(value) is types.GeneratorType:  # (`inspect.isgenerator`, inline)
                    for item in value:
                        self._flush_streams()
                        self.send(Output(job_id, item))
                    value = None
            finally:
                self._interruptible = False
        except _Interrupted:
            self._finish_job()
            self._report(Cancelled(job_id))
            return
        except BaseException as exc:  # noqa: BLE001 - user errors travel to the kernel
            self._finish_job()
            restarting = isinstance(exc, FatalException) or self._restart_on_error
            self._report(Error(job_id, error_info(exc), restarting))
            if restarting:
                # Warm state may be corrupt: this worker ends and the kernel starts a fresh one.
                os._exit(0)
            return
        self._finish_job()
        self._report(Result(job_id, value, started, time.time()))

    def _report(self, outcome: Result | Error | Skipped | Cancelled) -> None:
        """Send a job's outcome: on the reply connection for a direct call that said nothing
        else; otherwise on the data connection, after everything the job sent there."""
        if outcome.job != self._direct:
            self.send(outcome)
            return
        if isinstance(outcome, Result) and not self._spilled:
            try:
                self._send_reply(outcome)
                return
            except Exception:  # noqa: BLE001, S110 - unpicklable value: reported on the data
                pass  # connection, which turns it into the job's error
        self.send(outcome)
        self._send_reply(Moved(outcome.job))

    def _finish_job(self) -> None:
        self._flush_streams()
        with self._lock:
            self._current = None
            self._cancel_target = None
            self._interrupt_after_send = False


def _poller(channel: Channel) -> select.poll:
    """A poller for input on `channel`, for one thread (a poller cannot be shared by threads)."""
    poller = select.poll()
    poller.register(channel.fileno(), select.POLLIN)
    return poller


def _connect(
    path: Path, secret: bytes, worker_id: str, connection: Literal["data", "control", "reply"]
) -> Channel:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    authenticate_client(sock, secret)
    channel = Channel(sock)
    python = sys.version_info
    channel.send(
        pack(
            Hello(
                worker_id,
                connection,
                python[:3],
                os.getpid(),
                _files.filesystem_id(),
                _shm.available(),
            )
        )
    )
    return channel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sieve_jupyter.runtime.worker")
    parser.add_argument("--dir", required=True, type=Path, help="the private IPC directory")
    parser.add_argument("--worker-id", required=True)
    options = parser.parse_args(argv)

    # The kernel's interrupt button signals the kernel's process group; a worker has its own
    # session, and ignores SIGINT anyway so a stray one cannot break its warm state.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    socket_path, secret = options.dir / "sock", (options.dir / "key").read_bytes()
    data, control, reply = (
        _connect(socket_path, secret, options.worker_id, connection)
        for connection in ("data", "control", "reply")
    )
    worker = Worker(data, control, reply, options.worker_id)
    _context.set_context(_context.WorkerContext(worker.send, lambda: worker.current_job))
    worker.capture_output()
    threading.Thread(target=worker.control_loop, name="sieve-control", daemon=True).start()
    worker.serve()
    os._exit(0)


if __name__ == "__main__":
    main()
