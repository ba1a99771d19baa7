"""The worker process: load a function or model by value, run `__setup__` once, serve calls.

Started as ``python -m sieve_jupyter.runtime.worker --dir IPC_DIR --worker-id ID``. It opens three
authenticated connections to ``IPC_DIR/sock``: the *data* connection (the manager sends `load`,
`call`, `calls`, `swap`, `shutdown`; the worker sends everything it has to say), the
*control* connection (the manager sends `cancel` and replies to upstream calls), read by its own
thread so a cancel reaches a job while the main thread is busy running it, and the *reply*
connection, which carries only the outcome of a direct call.

A direct call is a `.run()` that found this worker idle: a `call` frame flagged `DIRECT_CALL`,
whose sender (the kernel thread that called `.run()`) waits on the reply connection itself. A
plain result goes back there; anything else the job said (printed text, progress, an error) goes
on the data connection in order, followed by ``moved(job)`` on the reply connection, so printed
output is never overtaken by the value it came before.

Worker -> manager messages: ``hello``, ``ready(setup_seconds, setup_at)``, ``setup_failed(info)``,
``result(job, value, started_at, finished_at)``, ``multi(messages)``, ``output(job, item)``,
``error(job, info, restarting)``, ``skipped(job)``, ``cancelled(job)``, ``log(job, stream, text)``,
``progress(job, fraction, message)``, ``ucall(request, job, name, args, kwargs)``, ``swapped``;
on the reply connection: ``result(...)`` and ``moved(job)``.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import io
import linecache
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

from sieve_jupyter.runtime import _context
from sieve_jupyter.runtime._pickling import dumps as dumps_by_value
from sieve_jupyter.runtime._types import FatalException
from sieve_jupyter.runtime.protocol import (
    DIRECT_CALL,
    Channel,
    ChannelClosed,
    UndecodableMessage,
    authenticate_client,
)

__all__ = ["main"]

_CANCEL_SIGNAL = signal.SIGUSR1


class _Interrupted(BaseException):
    """Raised inside user code when its job is cancelled (a BaseException so `except Exception`
    in user code does not swallow it)."""


def error_info(exc: BaseException) -> dict[str, Any]:
    """Describe an exception so it can be rebuilt (or at least reported) in the kernel.

    Beside the formatted text, ``frames`` lists the user's frames as ``(filename, line number,
    function, source line)`` and ``chain`` the exceptions before this one (its cause or
    context, oldest first, each with its own frames and how it led to the next), so the
    notebook can show them as IPython shows local ones.
    """
    tb = exc.__traceback__
    # Drop the worker's own frames: the user wants to see their code.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        pickled: bytes | None = dumps_by_value(exc)
    except Exception:  # noqa: BLE001 - an unpicklable exception is reported by name instead
        pickled = None
    return {
        "type_name": _type_name(exc),
        "message": str(exc),
        "traceback": text,
        "pickled": pickled,
        "frames": _user_frames(tb),
        "chain": _chain(exc),
    }


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _type_name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _user_frames(tb: Any) -> list[tuple[str, int, str, str]]:
    """The frames of the user's code: this package's and ``concurrent.futures``' left out."""
    return [
        (frame.filename, frame.lineno or 0, frame.name, frame.line or "")
        for frame in traceback.extract_tb(tb)
        if not frame.filename.startswith(_PACKAGE_DIR)
        and f"{os.sep}concurrent{os.sep}futures{os.sep}" not in frame.filename
    ]


def _chain(exc: BaseException) -> list[dict[str, Any]]:
    chain: list[dict[str, Any]] = []
    seen = {id(exc)}
    current = exc
    while True:
        if current.__cause__ is not None:
            earlier, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            earlier, relation = current.__context__, "context"
        else:
            break
        if id(earlier) in seen:
            break
        seen.add(id(earlier))
        chain.append({"type_name": _type_name(earlier), "message": str(earlier),
                      "frames": _user_frames(earlier.__traceback__), "relation": relation})
        current = earlier
    chain.reverse()
    return chain


class _CapturedStream(io.TextIOBase):
    """Replaces sys.stdout/sys.stderr: text is sent to the manager tagged with the current job."""

    def __init__(self, worker: Worker, name: str) -> None:
        self._worker = worker
        self._name = name
        self._buffer: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._buffer.append(text)
            self._size += len(text)
            urgent = "\n" in text or "\r" in text or self._size > 8192
        if urgent:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._buffer:  # (the common case, checked without the lock)
            return
        with self._lock:
            if not self._buffer:
                return
            text = "".join(self._buffer)
            self._buffer.clear()
            self._size = 0
        self._worker.send(("log", self._worker.current_job, self._name, text))


class Worker:
    """Serves one function or model over the data and control channels."""

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
        self._instance: Any = None
        self._restart_on_error = True
        self._main_thread = threading.get_ident()
        # Outgoing messages. While more calls are already waiting, results are left here for
        # the writer thread, which sends whatever has piled up as one frame; when the worker is
        # about to go idle, the main thread sends at once (no extra thread hop for `.run()`).
        self._out: collections.deque[Any] = collections.deque()
        self._out_ready = threading.Condition()
        self._writer_waiting = False
        # Whoever drains takes everything queued so far, so frames leave in message order.
        self._drain_lock = threading.Lock()
        self._streams: tuple[_CapturedStream, ...] = ()

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def current_job(self) -> str | None:
        return self._current

    def send(self, message: Any, *, defer: bool = False) -> None:
        """Send a message to the manager, or leave it for the writer thread when `defer`."""
        if self._direct is not None:
            self._spilled = True
        self._out.append(message)
        if not defer:
            self._drain()
        elif self._writer_waiting:
            with self._out_ready:
                self._out_ready.notify()

    def _drain(self) -> None:
        on_main = threading.get_ident() == self._main_thread
        if on_main:
            self._sending = True
        try:
            self._drain_now()
        finally:
            if on_main:
                self._sending = False
                if self._interrupt_after_send and self._interruptible:
                    self._interrupt_after_send = False
                    raise _Interrupted()

    def _drain_now(self) -> None:
        out = self._out
        try:
            with self._drain_lock:
                if not out:
                    return
                batch = [out.popleft() for _ in range(len(out))]
                try:
                    self._data.send(batch[0] if len(batch) == 1 else ("multi", batch))
                except ChannelClosed:
                    raise
                except Exception:  # noqa: BLE001 - pickling failed; nothing was written
                    self._send_each(batch)
        except ChannelClosed:
            os._exit(0)  # the manager is gone; nothing left to serve

    def _send_each(self, batch: list[Any]) -> None:
        """Send messages one at a time: a user's value that cannot be pickled fails its own
        job (the worker and its warm state carry on) instead of the whole batch or the worker."""
        for message in batch:
            try:
                self._data.send(message)
            except ChannelClosed:
                raise
            except Exception as exc:
                if message[0] not in ("result", "output"):
                    raise
                what = "return value" if message[0] == "result" else "streamed output"
                error = TypeError(
                    f"job {message[1]}: its {what} cannot be sent back to the kernel "
                    f"({type(exc).__name__}: {exc}). Fix: return picklable values (plain "
                    "data, numpy arrays, sieve.File)."
                )
                error.__cause__ = exc
                self._data.send(("error", message[1], error_info(error), False))

    def writer_loop(self) -> None:
        while True:
            with self._out_ready:
                while not self._out:
                    self._writer_waiting = True
                    self._out_ready.wait()
                self._writer_waiting = False
            self._drain()

    def capture_output(self) -> None:
        """Send what user code prints to the manager, tagged with the job that printed it."""
        self._streams = (_CapturedStream(self, "stdout"), _CapturedStream(self, "stderr"))
        sys.stdout, sys.stderr = self._streams

    def _flush_streams(self) -> None:
        for stream in self._streams:
            if stream._buffer:
                stream.flush()

    # -- control thread ----------------------------------------------------------------------

    def control_loop(self) -> None:
        while True:
            try:
                message = self._control.recv()
            except ChannelClosed:
                # The kernel died or dropped us: leave at once, even mid-job (no orphans).
                os._exit(0)
            kind = message[0]
            if kind == "cancel":
                self._cancel(message[1])
            elif kind == "reply":
                _, request_id, ok, value = message
                context = _context.current_context()
                if context is not None:
                    context.resolve(request_id, ok, value)
            elif kind == "shutdown":
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
            # Raising inside a socket write would leave half a frame on the data channel and
            # corrupt it (the kernel would drop the worker): interrupt once the frame is out.
            self._interrupt_after_send = True
            return
        raise _Interrupted()

    # -- main thread -------------------------------------------------------------------------

    def serve(self) -> None:
        signal.signal(_CANCEL_SIGNAL, self._on_cancel_signal)
        while True:
            try:
                message = self._data.recv()
            except ChannelClosed:
                return
            except UndecodableMessage as exc:
                # calls whose arguments cannot be rebuilt here: those jobs fail, we carry on
                direct = bool(self._data.flags & DIRECT_CALL)
                self.send(("undecodable", error_info(exc.__cause__ or exc), direct))
                if direct:  # its caller waits on the reply connection
                    self._report_direct(("moved", None))
                continue
            kind = message[0]
            if kind == "call":
                if self._data.flags & DIRECT_CALL:
                    self._direct = message[1]
                    self._spilled = False
                self._run_call(message[1], message[2], message[3], self._data.pending())
            elif kind == "calls":
                calls = message[1]
                last = len(calls) - 1
                for index, (job_id, args, kwargs) in enumerate(calls):
                    more = index < last or self._data.pending()
                    self._run_call(job_id, args, kwargs, more)
            elif kind == "load":
                self._load(message[1], message[2])
            elif kind == "swap":
                self._swap(message[1], message[2])
            elif kind == "shutdown":
                return

    def _load(self, payload: bytes, options: dict[str, Any]) -> None:
        self._restart_on_error = bool(options.get("restart_on_error", True))
        # An idle worker polls for its next call a moment before sleeping (see Channel.spin).
        self._data.spin = float(options.get("busy_poll", 0.0))
        _remember_sources(options.get("sources", {}))
        started = time.perf_counter()
        try:
            obj = cloudpickle.loads(payload)
            if options.get("kind") == "model":
                self._instance = obj()
                setup = getattr(self._instance, "__setup__", None)
                if setup is not None:
                    setup()
                self._target = self._instance.__predict__
            else:
                self._target = obj
        except BaseException as exc:  # noqa: BLE001 - reported to the kernel, then we exit
            self._flush_streams()
            self.send(("setup_failed", error_info(exc)))
            os._exit(3)
        self._flush_streams()
        self.send(("ready", time.perf_counter() - started, time.time()))

    def _swap(self, payload: bytes, sources: dict[str, list[str]]) -> None:
        """Hot reload: give the live instance the new class, keeping its `__setup__` state."""
        _remember_sources(sources)
        try:
            new_class = cloudpickle.loads(payload)
            if self._instance is not None:
                self._instance.__class__ = new_class
                self._target = self._instance.__predict__
            else:
                self._target = new_class
        except BaseException as exc:  # noqa: BLE001
            self.send(("swap_failed", error_info(exc)))
            return
        self.send(("swapped", time.time()))

    def _run_call(
        self, job_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], more: bool
    ) -> None:
        """Run one call. `more`: further calls are already waiting, so the result may wait for
        the writer thread to batch it with theirs."""
        with self._lock:
            if job_id in self._cancelled:
                self._cancelled.discard(job_id)
                self._report(job_id, ("skipped", job_id), more)
                return
            self._current = job_id
        target = self._target
        assert target is not None, "call before load"
        started = time.time()
        try:
            self._interruptible = True
            try:
                value = target(*args, **kwargs)
                streamed = inspect.isgenerator(value)
                if streamed:
                    for item in value:
                        self._flush_streams()
                        self.send(("output", job_id, item))
                    value = None
            finally:
                self._interruptible = False
        except _Interrupted:
            self._finish_job()
            self._report(job_id, ("cancelled", job_id), more)
            return
        except BaseException as exc:  # noqa: BLE001 - user errors travel to the kernel
            self._finish_job()
            restarting = isinstance(exc, FatalException) or self._restart_on_error
            # (sent at once, never left to the writer: the worker may exit right after)
            self._report(job_id, ("error", job_id, error_info(exc), restarting), False)
            if restarting:
                # Warm state may be corrupt: this worker ends and the manager starts a fresh one.
                os._exit(0)
            return
        self._finish_job()
        self._report(job_id, ("result", job_id, value, started, time.time()), more)

    def _report(self, job_id: str, outcome: tuple[Any, ...], more: bool) -> None:
        """Send a job's outcome: on the reply connection for a direct call that said nothing
        else; otherwise on the data connection, after everything the job sent there."""
        if job_id != self._direct:
            self.send(outcome, defer=more)
            return
        if outcome[0] == "result" and not self._spilled:
            try:
                self._report_direct(outcome)
                return
            except Exception:  # noqa: BLE001, S110 - unpicklable value: reported on the data
                pass  # connection, which turns it into the job's error
        self.send(outcome)
        self._report_direct(("moved", job_id))

    def _report_direct(self, message: tuple[Any, ...]) -> None:
        self._direct = None
        try:
            self._reply.send(message)
        except ChannelClosed:
            os._exit(0)  # the manager is gone

    def _finish_job(self) -> None:
        self._flush_streams()
        with self._lock:
            self._current = None
            self._cancel_target = None
            self._interrupt_after_send = False


def _remember_sources(sources: dict[str, list[str]]) -> None:
    """Give tracebacks the user's source lines even where their files do not exist here (a
    notebook cell's code in a container): linecache serves these without looking at disk."""
    for filename, lines in sources.items():
        if not os.path.exists(filename):
            linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)


def _connect(path: Path, secret: bytes) -> Channel:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    authenticate_client(sock, secret)
    return Channel(sock)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sieve_jupyter.runtime.worker")
    parser.add_argument("--dir", required=True, type=Path, help="the private IPC directory")
    parser.add_argument("--worker-id", required=True)
    options = parser.parse_args(argv)

    # The kernel's interrupt button signals the kernel's process group; a worker has its own
    # session, and ignores SIGINT anyway so a stray one cannot break its warm state.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    secret = (options.dir / "key").read_bytes()
    data = _connect(options.dir / "sock", secret)
    info = sys.version_info
    data.send(("hello", options.worker_id, (info.major, info.minor, info.micro), os.getpid()))
    control = _connect(options.dir / "sock", secret)
    control.send(("control", options.worker_id))
    reply = _connect(options.dir / "sock", secret)
    reply.send(("reply", options.worker_id))

    worker = Worker(data, control, reply, options.worker_id)
    _context.set_context(_context.WorkerContext(worker.send, lambda: worker.current_job))
    worker.capture_output()
    threading.Thread(target=worker.control_loop, name="sieve-control", daemon=True).start()
    threading.Thread(target=worker.writer_loop, name="sieve-writer", daemon=True).start()
    worker.serve()
    os._exit(0)


if __name__ == "__main__":
    main()
