"""`SieveWorker`: what runs inside a Ray actor — one warm function or model, its calls, its output.

The actor is a plain (single-threaded) Ray actor, so Ray runs its calls one at a time, in the
order the kernel sent them, on the process's main thread: a cancel can then interrupt the user's
code with a signal, exactly as in a local worker (Ray's own `ray.cancel` cannot interrupt a
running actor call; the kernel uses it for calls that have not started). Each call answers with
its outcome (`Result`, `Error`, ... of `runtime/messages.py`, packed). While a call runs:

- what it prints, its progress and its calls to other functions are *side messages*, numbered.
  A job that ends quickly returns its side messages with its outcome (the *tail*); a job that
  runs longer has them shipped to the kernel through the hub (`_ray_hub.py`) by the outbox
  thread as they come (after `LIVE_AFTER` seconds; a call to another function at once). The
  outcome says up to which number the hub holds them, so the kernel delivers them in order and
  before the outcome.
- the kernel reaches the running job through the hub too: a poller thread takes cancels and the
  answers to calls the job made, and shutdowns. What has reached the actor is taken before
  each call starts, by the main thread itself if the poller has not run yet (`_take_mail`):
  a call never starts after its cancel arrived.

A Ray actor answers a call after it has moved on: its reply leaves from another thread, so an
actor that dies just after calls returned (the next job crashed at once) can take their answers
with it. The worker keeps a *journal* on its node's disk (`_ray_journal.py`): which job ran last,
and the outcomes the kernel has not confirmed yet, read by a small task on that node after the
actor died. Since a lost node takes the journal with it, a call sent behind another starts
only once the worker holds a *grant* covering its number (`_ray_grants.py`), in the cluster's
key-value store: what the kernel then reads to tell the calls the worker may have begun from
those it never reached.

Generator functions run as Ray streaming generators (`stream`): each item travels as it is
yielded. This module is imported in the cluster's workers: the package travels there with the
actor's runtime environment (the Ray backend ships it); it imports nothing of the package but the
runtime (standard library and cloudpickle) and this backend's hub, journal, grants and wire.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import ray

from sieve_jupyter.backends._ray_grants import Grants, grant_key
from sieve_jupyter.backends._ray_journal import KEEP_AT_MOST, Journal
from sieve_jupyter.backends._ray_wire import call_failed, dumps_all, dumps_small, loads
from sieve_jupyter.runtime import _context, _files
from sieve_jupyter.runtime._loading import Loaded, load_code, swap_code
from sieve_jupyter.runtime._output import CapturedStream
from sieve_jupyter.runtime._tracebacks import error_info
from sieve_jupyter.runtime._types import FatalException
from sieve_jupyter.runtime.messages import (
    Cancel,
    Cancelled,
    Error,
    LoadOptions,
    Message,
    Output,
    Reply,
    Result,
    Shutdown,
    Skipped,
    UpstreamCall,
    pack,
    unpack,
)

__all__ = ["LIVE_AFTER", "Outcome", "Request", "SieveWorker"]

#: seconds a side message waits for its job to end (and travel in the tail) before the outbox
#: ships it through the hub: quick jobs cost no hub traffic, long ones stream
LIVE_AFTER = 0.05
#: seconds a poll of the hub's mailbox waits for something
_POLL_SECONDS = 10.0
_CANCEL_SIGNAL = signal.SIGUSR1
_THIS_FILE = os.path.abspath(__file__)

#: (packed outcome or None, the highest side-message number the hub holds, the tail: numbered
#: side messages not shipped). An outcome None: the call was not run (the worker is retiring)
Outcome = tuple[Any, int, list[tuple[int, Any]]]
#: a call: (job id, contents to drop (`_files.Forget`, None once unpickled), args, kwargs, the
#: jobs whose outcomes the kernel has received)
Request = tuple[str, None, tuple[Any, ...], dict[str, Any], list[str]]


#: side messages shipped at once: a call to another function waits for its answer, and a
#: streamed output is due as soon as it is produced
_URGENT = (UpstreamCall, Output)


class _Interrupted(BaseException):
    """Raised inside user code when its job is cancelled (a BaseException, so that
    `except Exception` in user code does not swallow it)."""


class _Outbox:
    """Side messages on their way to the kernel: numbered, held briefly, then shipped in order
    through the hub unless the job ends first and takes them along (`close_job`)."""

    def __init__(self, ship: Callable[[list[tuple[int, Any]]], None]) -> None:
        self._ship = ship
        self._changed = threading.Condition()
        self._pending: collections.deque[tuple[int, float, Any]] = collections.deque()
        self._number = 0
        #: the highest number the hub acknowledged
        self._acked = 0
        #: ship everything up to this number now (a call to another function waits on it)
        self._urgent = 0
        self._shipping = False
        self._broken_until = 0.0
        threading.Thread(target=self._loop, name="sieve-outbox", daemon=True).start()

    def add(self, message: Message) -> None:
        with self._changed:
            self._number += 1
            self._pending.append((self._number, time.monotonic(), pack(message)))
            if type(message) in _URGENT:
                self._urgent = self._number
            if len(self._pending) == 1 or self._urgent == self._number:
                self._changed.notify_all()

    def flush(self) -> None:
        """Ship everything pending now, and wait until the hub holds it (or cannot be
        reached: then it stays pending, and travels in the job's tail)."""
        with self._changed:
            target = self._urgent = self._number
            self._changed.notify_all()
            while self._acked < target and time.monotonic() >= self._broken_until:
                self._changed.wait(1.0)

    def close_job(self) -> tuple[int, list[tuple[int, Any]]]:
        """The job ended: take what was not shipped, once what is being shipped is
        acknowledged. Returns (the highest number the hub holds, the rest, numbered)."""
        with self._changed:
            while self._shipping:
                self._changed.wait()
            tail = [(number, packed) for number, _, packed in self._pending]
            self._pending.clear()
            return self._acked, tail

    def _due(self) -> int:
        """How many pending messages to ship now (a prefix: order is kept); lock held."""
        if not self._pending or time.monotonic() < self._broken_until:
            return 0
        if self._urgent >= self._pending[0][0]:
            return sum(1 for number, _, _ in self._pending if number <= self._urgent)
        cutoff = time.monotonic() - LIVE_AFTER
        return sum(1 for _, at, _ in self._pending if at <= cutoff)

    def _loop(self) -> None:
        while True:
            with self._changed:
                while True:
                    count = self._due()
                    if count:
                        break
                    if self._pending:
                        ready_at = max(self._pending[0][1] + LIVE_AFTER, self._broken_until)
                        self._changed.wait(max(0.001, ready_at - time.monotonic()))
                    else:
                        self._changed.wait()
                batch = [
                    (number, packed)
                    for number, _, packed in (self._pending.popleft() for _ in range(count))
                ]
                self._shipping = True
            shipped = False
            try:
                self._ship(batch)
                shipped = True
            except Exception:  # noqa: BLE001 - the hub is unreachable: the tail carries them
                pass
            with self._changed:
                self._shipping = False
                if shipped:
                    self._acked = batch[-1][0]
                else:
                    self._pending.extendleft(
                        (number, 0.0, packed) for number, packed in reversed(batch)
                    )
                    self._broken_until = time.monotonic() + 5.0
                self._changed.notify_all()


class SieveWorker:
    """One warm function or model in a Ray actor (see the module docstring)."""

    def __init__(self, worker_id: str, hub: Any, hub_name: str, namespace: str) -> None:
        self._worker_id = worker_id
        self._hub = hub
        self._hub_name = hub_name
        self._namespace = namespace
        self._lock = threading.Lock()
        #: the poller's pending take from the hub, and the last one handled (by either thread)
        self._mail: Any = None
        self._mail_taken: Any = None
        self._mail_lock = threading.Lock()
        self._arrived = _arrived_check()
        self._current: str | None = None
        self._interruptible = False
        self._cancel_target: str | None = None
        self._cancelled: set[str] = set()
        self._target: Callable[..., Any] | None = None
        self._loaded: Loaded | None = None
        self._restart_on_error = True
        #: said it restarts (restart_on_error, FatalException): it runs nothing more
        self._retired = False
        self._main_thread = threading.get_ident()
        name = ray.get_runtime_context().get_actor_id() or f"pid-{os.getpid()}"
        self._journal = Journal(os.path.join(tempfile.gettempdir(), "sieve-jupyter-ray", name))
        self._grants = Grants(grant_key(namespace, hub_name, worker_id))
        self._job_began = 0.0
        self._outbox = _Outbox(self._ship)
        self._streams = (
            CapturedStream("stdout", self._outbox.add, lambda: self._current),
            CapturedStream("stderr", self._outbox.add, lambda: self._current),
        )
        sys.stdout, sys.stderr = self._streams
        self._context = _context.WorkerContext(self._outbox.add, lambda: self._current)
        _context.set_context(self._context)
        # (a plain actor builds itself on the main thread, where Python runs signal handlers)
        signal.signal(_CANCEL_SIGNAL, self._on_cancel_signal)
        threading.Thread(target=self._poll, name="sieve-control", daemon=True).start()

    # -- what the kernel calls ---------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        """Who this worker is and where it runs."""
        context = ray.get_runtime_context()
        return {
            "pid": os.getpid(),
            "python": tuple(sys.version_info[:3]),
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "actor_id": context.get_actor_id(),
            "journal": self._journal.folder,
            "files": _files.filesystem_id(),
            "grants": self._grants.works,
        }

    def ping(self) -> bool:
        return True

    def load(self, payload: bytes, options: LoadOptions, env: dict[str, str], gpu: bool) -> Outcome:
        """Unpickle the function or model and run `__setup__` once."""
        os.environ.update(env)
        if not gpu:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # as on Sieve: no GPU asked, none seen
        self._restart_on_error = options["restart_on_error"]
        # The kernel does not see this node's files: every File sent from here (an answer, a
        # streamed output, a side message, a call to another function) takes its content.
        by_content = options.get("files_by_content", False)
        _files.carry_content_by_default(by_content)
        if by_content:  # (and the kernel sends contents this worker holds as references)
            _files.keep_originals()
        loaded, answer = load_code(payload, options, _error)
        if loaded is None:
            self._retired = True
        else:
            self._loaded, self._target = loaded, loaded.target
        return self._outcome(answer)

    def swap(self, number: int, payload: bytes, sources: dict[str, list[str]]) -> Outcome:
        """Hot reload: the live instance takes the new class, keeping its `__setup__` state;
        if the new code does not load, the code it had keeps answering."""
        assert self._loaded is not None, "swap before load"
        answer = swap_code(self._loaded, number, payload, sources, _error)
        self._target = self._loaded.target
        return self._outcome(answer)

    def call(self, request: Request | bytes, grant: int = 0) -> Outcome | bytes:
        """Run one job of a function that returns: `request` is (job, args, kwargs, the jobs
        whose outcomes the kernel got since the previous call), pickled (`_ray_wire.py`).
        `grant`: the call's number when it was sent behind another (it starts once a grant
        covers it: `_ray_grants.py`), else 0."""
        return self._call(request, grant, by_hub=False)

    def calls(self, requests: list[tuple[str, bytes]], first: int, behind: bool) -> Outcome | bytes:
        """Run a group of jobs sent at once (a burst of pushes: one Ray call instead of one per
        job), in order. `requests`: (job, request as for `call`) each. Each job's outcome
        goes out as a side message (`_Outbox`), after what it printed: with the group's
        answer, or through the hub once it has waited `LIVE_AFTER` — so while a long job
        runs, the kernel has the outcomes of those before it and sees it start. An outcome
        the journal cannot keep (a large result) is shipped through the hub before the next
        job starts, so a crash cannot take it along. Answers as `call` does, with, in place
        of an outcome of its own, whether an outcome was large (the kernel then sends this
        function's calls one by one). A job whose call cannot be run here (its arguments
        cannot be rebuilt, its result cannot be pickled) fails alone. The jobs are numbered
        from `first`; each starts once a grant covers it, the first only if `behind`."""
        large = False
        for index, (job, request) in enumerate(requests):
            try:
                _, _, args, kwargs, received = loads(request)
            except Exception as exc:  # noqa: BLE001 - reported as that job's error
                message: Message = Error(job, _error(call_failed(job, exc)), False)
            else:
                self._journal.received(received)
                if self._retired:
                    continue  # (the kernel replaces this worker and runs the rest there)
                grant = first + index if index or behind else 0
                message = self._run(job, args, kwargs, grant, by_hub=False)
            try:
                data = dumps_small((pack(message), 0, []))
            except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                message = Error(job, _error(call_failed(job, exc)), False)
                data = dumps_small((pack(message), 0, []))
            self._outbox.add(message)
            if data is not None and len(data) <= KEEP_AT_MOST:
                self._journal.keep_pickled(job, data)
            else:
                large = True
                self._outbox.flush()
        outcome: Outcome = (large, *self._outbox.close_job())
        return dumps_small(outcome) or outcome

    def stream_by_hub(self, request: Request | bytes, grant: int = 0) -> Outcome | bytes:
        """`stream` for a kernel that cannot read Ray's streaming generators (one connected
        through Ray Client): each item goes to the kernel as a side message, shipped through
        the hub at once (`Output`), and the call answers with the outcome as `call` does."""
        return self._call(request, grant, by_hub=True)

    def _call(self, request: Request | bytes, grant: int, *, by_hub: bool) -> Outcome | bytes:
        job, _, args, kwargs, received = loads(request)
        self._journal.received(received)
        if self._retired:
            return None, *self._outbox.close_job()
        return self._reply(self._run(job, args, kwargs, grant, by_hub=by_hub), job)

    def _run(
        self, job: str, args: tuple[Any, ...], kwargs: dict[str, Any], grant: int, *, by_hub: bool
    ) -> Message:
        """Run one job; returns its outcome (`Result`, `Error`, `Skipped` or `Cancelled`)."""
        started = time.time()
        skipped = self._begin(job, grant)
        if skipped is not None:
            return skipped
        target = self._target
        assert target is not None, "call before load"
        try:
            try:
                self._arm()
                value = target(*args, **kwargs)
                if by_hub and inspect.isgenerator(value):
                    for item in value:
                        self._interruptible = False  # (not while the outbox takes it)
                        self._outbox.add(Output(job, item))
                        self._arm()
                    value = None
            finally:
                self._interruptible = False
        except BaseException as exc:  # noqa: BLE001 - user errors travel to the kernel
            return self._failed(job, exc)
        self._end()
        return Result(job, value, started, time.time())

    def stream(self, request: Request | bytes, grant: int = 0) -> Iterator[Any]:
        """Run one job of a generator function (`request`, `grant` as for `call`): yields
        ``("output", item)`` for each item as it is produced, then ``("end", *outcome)``."""
        job, _, args, kwargs, received = loads(request)
        self._journal.received(received)
        if self._retired:
            yield ("end", None, *self._outbox.close_job())
            return
        started = time.time()
        skipped = self._begin(job, grant)
        if skipped is not None:
            yield ("end", *self._outcome(skipped, job))
            return
        target = self._target
        assert target is not None, "call before load"
        try:
            try:
                self._arm()
                produced = target(*args, **kwargs)
                if inspect.isgenerator(produced):
                    for item in produced:
                        # (an interrupt must not land while Ray sends the item: it waits)
                        self._interruptible = False
                        yield ("output", item)
                        self._arm()
                    produced = None
            finally:
                self._interruptible = False
        except BaseException as exc:  # noqa: BLE001 - user errors travel to the kernel
            yield ("end", *self._outcome(self._failed(job, exc), job))
            return
        self._end()
        yield ("end", *self._outcome(Result(job, produced, started, time.time()), job))

    # -- running jobs ------------------------------------------------------------------------

    def _arm(self) -> None:
        """Let a cancel interrupt the running job from now on (at once if one came)."""
        self._interruptible = True
        if self._cancel_target is not None and self._cancel_target == self._current:
            raise _Interrupted()

    def _begin(self, job: str, grant: int) -> Skipped | None:
        if grant:
            self._grants.admit(grant)  # (before the mail: a cancel may come meanwhile)
        self._take_mail()
        with self._lock:
            if job in self._cancelled:
                self._cancelled.discard(job)
                return Skipped(job)
            self._current = job
        self._journal.started(job)
        self._job_began = time.perf_counter()
        return None

    def _end(self) -> None:
        for stream in self._streams:
            stream.flush()
        with self._lock:
            job, self._current = self._current, None
            self._cancel_target = None
        if job is not None:
            self._journal.finished(job)
            self._grants.ran(time.perf_counter() - self._job_began)

    def _failed(self, job: str, exc: BaseException) -> Message:
        self._end()
        if isinstance(exc, _Interrupted):
            return Cancelled(job)
        restarting = isinstance(exc, FatalException) or self._restart_on_error
        if restarting:
            # Warm state may be corrupt: this worker runs nothing more and the kernel replaces
            # it (an actor cannot end itself after answering).
            self._retired = True
        return Error(job, _error(exc), restarting)

    def _outcome(self, message: Message, job: str | None = None) -> Outcome:
        """The answer to a call; a job's is kept in the journal until the kernel has it."""
        for stream in self._streams:
            stream.flush()
        outcome: Outcome = (pack(message), *self._outbox.close_job())
        if job is not None:
            self._journal.keep(job, outcome)
        return outcome

    def _reply(self, message: Message, job: str) -> Outcome | bytes:
        """A job's outcome as `call` answers it: pickled once, for the journal and the
        answer (`_ray_wire.py`), unless a large buffer in it is left to Ray (not kept)."""
        for stream in self._streams:
            stream.flush()
        outcome: Outcome = (pack(message), *self._outbox.close_job())
        data = dumps_small(outcome)
        if data is None:
            return outcome
        self._journal.keep_pickled(job, data)
        return data

    # -- the hub -----------------------------------------------------------------------------

    def _ship(self, batch: list[tuple[int, Any]]) -> None:
        ray.get(self._hub.put.remote(self._worker_id, dumps_all(batch)))
        with contextlib.suppress(OSError):  # (the hub has them: that is what counts)
            self._journal.shipped(batch[-1][0])

    def _poll(self) -> None:
        """Take what the kernel left in this worker's mailbox: cancels, replies, shutdowns."""
        while True:
            try:
                self._mail = mail = self._hub.take.remote(self._worker_id, _POLL_SECONDS)
                posted = ray.get(mail)
            except Exception:  # noqa: BLE001 - the hub restarts: find it again by name
                time.sleep(1.0)
                try:
                    self._hub = ray.get_actor(self._hub_name, namespace=self._namespace)
                except ValueError:
                    pass
                continue
            self._handle_mail(mail, posted)

    def _take_mail(self) -> None:
        """Handle what reached the actor for the poller, before a call starts.

        The poller thread needs the interpreter's lock to return from its wait, and a job may
        keep that lock to its end (a C extension's loop, a long switch interval): the main
        thread would then start the next call, maybe one cancelled long before, while the
        cancel lies unread in this process. So the main thread looks whether the poller's
        answer has arrived (Ray's in-process store, a fraction of a microsecond) and if so
        handles it itself; the poller then finds it handled."""
        mail = self._mail
        if mail is None or mail is self._mail_taken or not self._arrived(mail):
            return
        try:
            posted = ray.get(mail)
        except Exception:  # noqa: BLE001 - the hub failed: the poller deals with it
            return
        self._handle_mail(mail, posted)

    def _handle_mail(self, mail: Any, posted: list[Any]) -> None:
        with self._mail_lock:
            if mail is self._mail_taken:
                return  # (the other thread handled it)
            try:
                for packed in posted:
                    message = unpack(loads(packed))
                    if isinstance(message, Cancel):
                        self._cancel(message.job)
                    elif isinstance(message, Reply):
                        self._context.resolve(message.request, message.ok, message.value)
                    elif isinstance(message, Shutdown):
                        self._journal.remove()
                        self._grants.close()
                        os._exit(0)
            finally:
                # (only now, under the lock: `_take_mail` must not pass it half handled,
                # and neither thread handles it twice)
                self._mail_taken = mail

    def _cancel(self, job: str) -> None:
        with self._lock:
            if self._current == job:
                self._cancel_target = job
                signal.pthread_kill(self._main_thread, _CANCEL_SIGNAL)
            else:
                self._cancelled.add(job)

    def _on_cancel_signal(self, signum: int, frame: Any) -> None:
        if (
            self._interruptible
            and self._cancel_target is not None
            and (self._cancel_target == self._current)
        ):
            raise _Interrupted()


def _arrived_check() -> Callable[[Any], bool]:
    """Whether an object's value is in this process already (the reply of a Ray call made
    from here), without waiting or asking the raylet. Ray's public `ray.wait` with no timeout
    asks the raylet when it is not (about 100 us); its core worker answers from its own store.
    Where this Ray version lacks that, nothing is ever seen as arrived (the poller alone
    takes the mail, as before)."""
    try:
        import ray._private.worker as ray_worker

        exists = ray_worker.global_worker.core_worker.object_exists  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return lambda ref: False

    def arrived(ref: Any) -> bool:
        try:
            return bool(exists(ref, memory_store_only=True))
        except Exception:  # noqa: BLE001 - an API of another shape: never seen
            return False

    return arrived


def _error(exc: BaseException) -> Any:
    """`error_info` without this module's own frame (the user wants to see their code)."""
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == _THIS_FILE:
        tb = tb.tb_next
    return error_info(exc.with_traceback(tb))
