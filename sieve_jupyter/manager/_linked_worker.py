"""`LinkedWorker`: a worker the kernel reaches through its backend's own transport.

A Ray actor may run on a machine that cannot reach the kernel's Unix socket, and with Ray Client
the kernel may be outside the cluster, so the Ray backend carries its workers' messages itself
(`backends.WorkerLink`). The messages are those of `runtime/messages.py`, both ways, so this
class is a thin adapter: the pool hands it calls (`send_calls`), cancels and replies
(`send_control`) and swaps, which it passes to the link; what the link delivers goes to
`_messages.handle` exactly as a connected worker's reader does, a burst of results settled in one
round. The link calls this object from its own threads, one at a time.
"""

from __future__ import annotations

import _signal
import threading
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from sieve_jupyter.backends import CallBatch, LinkLaunch, Unsendable, WorkerLink
from sieve_jupyter.manager import _messages
from sieve_jupyter.manager._worker_base import Worker, WorkerState
from sieve_jupyter.runtime.messages import (
    Cancel,
    Load,
    Message,
    Reply,
    Result,
    Shutdown,
)
from sieve_jupyter.runtime.protocol import ChannelClosed

if TYPE_CHECKING:
    from sieve_jupyter.manager._pool import WorkerPool

__all__ = ["LinkedWorker", "deferred_interrupts"]


class LinkedWorker(Worker):
    """A worker reached through a `WorkerLink` of its pool's backend."""

    linked = True

    def __init__(self, pool: WorkerPool, worker_id: str) -> None:
        super().__init__(pool, worker_id, None)
        self.link: WorkerLink | None = None
        self._reason = "exit status unknown"
        self._closed = threading.Event()

    # -- the pool's side ---------------------------------------------------------------------

    def launch(self, env: dict[str, str], labels: dict[str, str], timeout: float) -> None:
        pool = self.pool
        link = self.link = pool.backend.start_link(
            LinkLaunch(pool.spec, self.worker_id, env, labels, timeout), self
        )
        link.wait_started()
        self.pid = link.pid
        with pool.lock:
            self.move_to(WorkerState.SETUP)
        link.load(Load(pool.payload, pool.load_options()))

    def send_calls(
        self, calls: CallBatch, unsendable: Unsendable, *, waited: str | None = None
    ) -> None:
        """Hand a burst of calls to the link (send lock held; see `WorkerLink.send_calls`)."""
        link = self.link
        if link is None:
            raise ChannelClosed("not started")
        link.send_calls(calls, unsendable, waited=waited)

    def settle_here(self, job: str, *, wait: bool = True) -> None:
        """Wait for `job`'s outcome on this thread if the link can (`WorkerLink.settle_here`);
        an interrupt propagates, leaving the outcome to the link's own thread, as does
        `wait=False`."""
        link = self.link
        if link is not None:
            link.settle_here(job, wait=wait)

    def send_control(self, message: Cancel | Reply | Shutdown) -> None:
        link = self.link
        if link is None:
            return
        if type(message) is Cancel:
            link.cancel(message.job)
        elif type(message) is Reply:
            link.reply(message.request, message.ok, message.value)
        else:
            self.terminate()

    def send_swap(self, swap: int, payload: bytes, sources: dict[str, list[str]]) -> None:
        link = self.link
        if link is None:
            raise ChannelClosed("not started")
        with self.send_lock:
            link.swap(swap, payload, sources)

    def terminate(self, grace: float = 2.0) -> None:
        self.exit_expected = True
        if self.link is not None:
            self.link.terminate()

    def close_channels(self) -> None:
        pass  # (the link let go of the worker before it reported it closed)

    def exit_reason(self, wait: float) -> str:
        self._closed.wait(wait)
        return self._reason

    def describe(self) -> dict[str, Any]:
        link = self.link
        return {
            **self._describe_base(),
            "description": link.description if link is not None else "starting",
            **(link.details() if link is not None else {}),
        }

    # -- the link's side (LinkReceiver) ------------------------------------------------------

    def receive(self, messages: Sequence[Message], held: Collection[str] = ()) -> None:
        pool = self.pool
        if held:
            self.shared_results.update(held)  # (settled below: `jobs_done` holds them weakly)
        results: list[Result] = []
        for message in messages:
            if type(message) is Result:
                results.append(message)
                continue
            if results:
                pool.jobs_done(self, results)
                results = []
            _messages.handle(pool, self, message)
        if results:
            pool.jobs_done(self, results)

    def log(self, stream: str, text: str) -> None:
        self.pool.job_log(self, None, stream, text)

    def link_closed(self, reason: str, *, blame_running: bool) -> None:
        self._reason = reason
        if not blame_running:
            self.exit_expected = True
        self._closed.set()
        self.pool.worker_exited(self)


class deferred_interrupts:  # noqa: N801 - used as a context manager, like a function
    """Hold back a KeyboardInterrupt (the notebook's stop button) until the block is done.

    A call handed to an engine (a Ray actor call) cannot be cut in half the way a frame can be
    written whole or not at all: an interrupt inside it could leave the kernel not knowing
    whether the call went out. Only the main thread receives it, so elsewhere this does nothing.
    It runs around every call sent to a Ray worker, so it uses the C module under `signal`:
    `signal.signal` tries to turn each handler into an enum, through a failing lookup: about
    8 us a call, 18 us in all for this, against 2 us now.
    """

    __slots__ = ("_caught", "_previous")

    def __enter__(self) -> None:
        self._previous: Any = None
        self._caught: list[Any] = []
        if threading.current_thread() is not threading.main_thread():
            return
        previous = _signal.getsignal(_signal.SIGINT)
        if callable(previous):  # (ignored or default: nothing to hold back)
            self._previous = previous
            _signal.signal(_signal.SIGINT, self._catch)

    def _catch(self, signum: int, frame: Any) -> None:
        self._caught.append(frame)

    def __exit__(self, *exc_info: object) -> None:
        previous = self._previous
        if previous is None:
            return
        _signal.signal(_signal.SIGINT, previous)
        if self._caught:
            previous(_signal.SIGINT, self._caught[0])
