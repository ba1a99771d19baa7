"""Worker output lands under the cell that started the job — never in whichever cell runs later,
and never as a flood. (So does the output of a prediction pushed to a server, as it arrives.)

At submission (on the cell's own thread) the router notes the cell's request header on the job.
Log lines from the worker then go out on IOPub with *that* header as parent, so the frontend
files them under the right cell however late they arrive. Two things keep a cell readable:

- Jobs shown in a progress widget are *claimed* by it (`claim_output`): their output lives in
  the widget's job picker, not in the cell.
- A cold start shows one notice per function and cell (`_StartupNotices`), and only while a
  worker really starts: ``resize: starting a worker and running its setup… 2.5 s``, then
  ``resize: worker ready after 3.1 s`` with the worker's own start-up time.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from sieve_jupyter.manager import Event, JobFuture, Manager
from sieve_jupyter.sdk._remote import push_watchers

__all__ = ["OutputRouter", "claim_output"]

#: a cold start shorter than this shows nothing (most local workers start in ~0.1 s)
_SHOW_STARTUP_AFTER = 1.0
_NOTICE_REFRESH = 0.5
_TICK = 0.1
_STARTING = frozenset({"starting", "setup"})


class _Route:
    """Where one job's output goes: the cell that pushed it, unless a widget claimed it."""

    __slots__ = ("claimed", "parent")

    def __init__(self, parent: Any) -> None:
        self.parent = parent
        self.claimed = False


def claim_output(futures: Iterable[Any]) -> None:
    """Stop printing these jobs' output under their cells: a widget shows it instead."""
    for future in futures:
        route = getattr(future, "context", None)
        if isinstance(route, _Route):
            route.claimed = True


def _cell_id(parent: Any) -> str:
    if isinstance(parent, dict):
        return str(parent.get("header", {}).get("msg_id", ""))
    return str(parent)


class OutputRouter:
    """Routes job logs to their cells (ipykernel) or to the terminal (terminal IPython)."""

    def __init__(self, shell: Any, manager: Manager) -> None:
        self._shell = shell
        self._kernel = getattr(shell, "kernel", None)
        self._manager = manager
        self._notices = _StartupNotices(self) if self._kernel is not None else None
        self._unsubscribe = manager.events.subscribe(self._on_event, kinds={"log", "function"})
        manager.submit_hooks.append(self.on_submit)
        push_watchers.append(self)
        self._thread_ident = threading.get_ident()

    def close(self) -> None:
        self._unsubscribe()
        if self.on_submit in self._manager.submit_hooks:
            self._manager.submit_hooks.remove(self.on_submit)
        if self in push_watchers:
            push_watchers.remove(self)
        if self._notices is not None:
            self._notices.close()

    # -- submission (the cell's thread) -----------------------------------------------------

    def on_submit(self, future: JobFuture[Any]) -> None:
        if threading.get_ident() != self._thread_ident:
            return  # a job pushed by another job (chaining) or a thread: no cell of its own
        parent = self._current_parent()
        future.context = _Route(parent)
        if self._notices is not None:
            pool = self._manager.record(future.function).pool
            if pool is None or pool.state != "warm":
                self._notices.expect(parent, future)

    # -- predictions pushed to a server (`sieve.function.get("http://...")`) ----------------

    def pushed(self, future: JobFuture[Any]) -> None:
        if threading.get_ident() == self._thread_ident:
            future.context = _Route(self._current_parent())

    def printed(self, future: JobFuture[Any], stream: str, text: str) -> None:
        route = future.context
        if isinstance(route, _Route) and not route.claimed:
            self.emit_stream(route.parent, stream, text)

    def _current_parent(self) -> Any:
        if self._kernel is None:
            return "terminal"
        try:
            return self._kernel.get_parent("shell")
        except TypeError:  # older ipykernel
            return self._kernel.get_parent()

    # -- events (manager threads) -----------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.kind == "function":
            if self._notices is not None:
                self._notices.on_function(event.data)
            return
        if event.kind != "log":
            return
        job_id = event.data["job_id"]
        if job_id is None:
            return
        try:
            future = self._manager.job(job_id)
        except Exception:  # noqa: BLE001 - a job pruned from history
            return
        route = future.context
        if not isinstance(route, _Route) or route.claimed:
            return
        stream, text = event.data["stream"], event.data["text"]
        if self._notices is not None and self._notices.hold(route.parent, future, stream, text):
            return
        self.emit_stream(route.parent, stream, text)

    def emit_stream(self, parent: Any, stream: str, text: str) -> None:
        if parent == "terminal" or self._kernel is None:
            target = sys.__stderr__ if stream == "stderr" else sys.__stdout__
            if target is not None:
                target.write(text)
                target.flush()
            return
        self._send("stream", {"name": stream, "text": text}, parent)

    def display(self, parent: Any, text: str, display_id: str, *, update: bool) -> None:
        content = {
            "data": {"text/plain": text},
            "metadata": {},
            "transient": {"display_id": display_id},
        }
        self._send("update_display_data" if update else "display_data", content, parent)

    def _send(self, msg_type: str, content: dict[str, Any], parent: Any) -> None:
        kernel = self._kernel
        assert kernel is not None
        kernel.session.send(
            kernel.iopub_socket,
            msg_type,
            content,
            parent=parent,
            ident=self._topic(msg_type, content),
        )

    def _topic(self, msg_type: str, content: dict[str, Any]) -> bytes:
        if msg_type == "stream":
            return f"stream.{content['name']}".encode()
        return msg_type.encode()


class _Notice:
    """The start-up notice of one function in one cell."""

    def __init__(self, parent: Any, future: JobFuture[Any]) -> None:
        self.parent = parent
        self.function = future.function
        self.first: JobFuture[Any] = future  # its first job here, waiting for the worker
        self.display_id = uuid.uuid4().hex
        self.shown = False
        self.shown_at = 0.0
        self.finished = False
        self.held: list[tuple[str, str]] = []  # output held back while the notice may appear


class _StartupNotices:
    """At most one notice per function and cell, shown only while a worker really starts.

    Worker start and readiness come from the manager's ``function`` events. Until a notice
    either appears (after `_SHOW_STARTUP_AFTER` seconds) or is dropped (the worker was quick),
    the output of that cell's jobs of that function is held back and then sent after it, so the
    notice never lands between two lines of ``__setup__``'s output.
    """

    def __init__(self, router: OutputRouter) -> None:
        self._router = router
        self._lock = threading.Lock()
        self._notices: dict[tuple[str, str], _Notice] = {}
        self._done: set[tuple[str, str]] = set()  # (cell, function) pairs that had their notice
        self._starting: dict[str, dict[str, float]] = {}  # function -> worker id -> since
        self._ready_after: dict[str, float] = {}  # function -> start-up of its last ready worker
        self._thread: threading.Thread | None = None
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            notices = list(self._notices.values())
            self._notices.clear()
            for notice in notices:
                notice.finished = True
                self._flush(notice)

    def expect(self, parent: Any, future: JobFuture[Any]) -> None:
        """A job of a function without a warm worker was pushed from this cell."""
        key = (_cell_id(parent), future.function)
        with self._lock:
            if self._closed or key in self._notices or key in self._done:
                return
            self._notices[key] = _Notice(parent, future)
            self._done.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sieve-startup", daemon=True)
                self._thread.start()

    def hold(self, parent: Any, future: JobFuture[Any], stream: str, text: str) -> bool:
        """Hold back output while this cell's notice for the function may still appear."""
        key = (_cell_id(parent), future.function)
        with self._lock:
            notice = self._notices.get(key)
            if notice is None or notice.shown or notice.finished:
                return False
            notice.held.append((stream, text))
            return True

    def on_function(self, data: dict[str, Any]) -> None:
        """A function's workers changed: note starts, and settle notices once one is ready."""
        name = str(data.get("name", ""))
        now = time.monotonic()
        workers = [w for w in data.get("workers") or [] if isinstance(w, dict)]
        with self._lock:
            starting = self._starting.setdefault(name, {})
            for worker in workers:
                worker_id, state = str(worker.get("id")), worker.get("state")
                if state in _STARTING:
                    starting.setdefault(worker_id, now)
                elif worker_id in starting:
                    since = starting.pop(worker_id)
                    if state == "ready":
                        self._ready_after[name] = now - since
            live = {str(w.get("id")) for w in workers}
            for worker_id in [w for w in starting if w not in live]:
                del starting[worker_id]  # it failed or was stopped while starting
            # Settled once a worker serves (others may still start) or none is starting.
            if data.get("state") != "warm" and (starting or data.get("state") == "starting"):
                return
            ready = data.get("state") == "warm"
            for key in [k for k in self._notices if k[1] == name]:
                self._finish(self._notices.pop(key), ready=ready)

    # -- the notice thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            time.sleep(_TICK)
            now = time.monotonic()
            with self._lock:
                if self._closed or not self._notices:
                    self._thread = None
                    return
                due: list[tuple[_Notice, float]] = []
                for key, notice in list(self._notices.items()):
                    since = min(self._starting.get(notice.function, {}).values(), default=None)
                    if since is None:
                        if notice.first.status.value != "queued":
                            del self._notices[key]  # it never waited for a starting worker
                            due.append((notice, -1.0))
                        continue
                    waited = now - since
                    if waited < _SHOW_STARTUP_AFTER:
                        continue
                    if notice.shown and now - notice.shown_at < _NOTICE_REFRESH:
                        continue
                    due.append((notice, waited))
            for notice, waited in due:
                if waited < 0:
                    self._release(notice)
                else:
                    self._show(notice, waited)

    def _show(self, notice: _Notice, waited: float) -> None:
        text = f"{notice.function}: starting a worker and running its setup… {waited:.1f} s"
        with self._lock:
            if notice.finished:
                return
            first = not notice.shown
            notice.shown, notice.shown_at = True, time.monotonic()
            # Under the lock, so output that arrives meanwhile waits and follows the notice.
            self._router.display(notice.parent, text, notice.display_id, update=not first)
            self._flush(notice)

    def _finish(self, notice: _Notice, *, ready: bool) -> None:
        """Settle a notice (lock held): its last words if it showed, then the held output."""
        notice.finished = True
        if notice.shown:
            after = self._ready_after.get(notice.function)
            text = (
                f"{notice.function}: worker ready after {after:.1f} s"
                if ready and after
                else f"{notice.function}: no worker started"
            )
            self._router.display(notice.parent, text, notice.display_id, update=True)
        self._flush(notice)

    def _release(self, notice: _Notice) -> None:
        with self._lock:
            notice.finished = True
            self._flush(notice)

    def _flush(self, notice: _Notice) -> None:
        """Send the output held for a notice (lock held); nothing is held for it after this."""
        held, notice.held = notice.held, []
        notice.shown = True
        for stream, chunk in held:
            self._router.emit_stream(notice.parent, stream, chunk)
