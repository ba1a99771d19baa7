"""Worker output lands under the cell that started the job — never in whichever cell runs later.

At submission (on the cell's own thread) the router notes the cell's request header on the job.
Log lines from the worker then go out on IOPub with *that* header as parent, so the frontend
files them under the right cell however late they arrive. While a cold worker starts, the
cell shows how long it has been waiting instead of sitting silent.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from typing import Any

from sieve_jupyter.manager import Event, JobFuture, Manager

__all__ = ["OutputRouter"]

#: a cold start shorter than this shows nothing (most local workers start in ~0.1 s)
_SHOW_STARTUP_AFTER = 1.0
_STARTUP_REFRESH = 0.5


class OutputRouter:
    """Routes job logs to their cells (ipykernel) or to the terminal (terminal IPython)."""

    def __init__(self, shell: Any, manager: Manager) -> None:
        self._shell = shell
        self._kernel = getattr(shell, "kernel", None)
        self._manager = manager
        self._unsubscribe = manager.events.subscribe(self._on_event, kinds={"log"})
        manager.submit_hooks.append(self.on_submit)
        self._thread_ident = threading.get_ident()

    def close(self) -> None:
        self._unsubscribe()
        if self.on_submit in self._manager.submit_hooks:
            self._manager.submit_hooks.remove(self.on_submit)

    # -- submission (the cell's thread) -----------------------------------------------------

    def on_submit(self, future: JobFuture[Any]) -> None:
        if threading.get_ident() != self._thread_ident:
            return  # a job pushed by another job (chaining) or a thread: no cell of its own
        parent = self._current_parent()
        future.context = parent
        record = self._manager.record(future.function)
        pool = record.pool
        if self._kernel is not None and (pool is None or pool.state != "warm"):
            _StartupNotice(self, future, parent).start()

    def _current_parent(self) -> Any:
        if self._kernel is None:
            return "terminal"
        try:
            return self._kernel.get_parent("shell")
        except TypeError:  # older ipykernel
            return self._kernel.get_parent()

    # -- events (manager threads) -----------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.kind != "log":
            return
        job_id = event.data["job_id"]
        if job_id is None:
            return
        try:
            future = self._manager.job(job_id)
        except Exception:  # noqa: BLE001 - a job pruned from history
            return
        if future.context is None:
            return
        self.emit_stream(future.context, event.data["stream"], event.data["text"])

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
        kernel.session.send(kernel.iopub_socket, msg_type, content, parent=parent,
                            ident=self._topic(msg_type, content))

    def _topic(self, msg_type: str, content: dict[str, Any]) -> bytes:
        if msg_type == "stream":
            return f"stream.{content['name']}".encode()
        return msg_type.encode()


class _StartupNotice(threading.Thread):
    """Shows `adder: starting worker… 3.5 s` under the cell while the job waits for a worker."""

    def __init__(self, router: OutputRouter, future: JobFuture[Any], parent: Any) -> None:
        super().__init__(name=f"sieve-startup-{future.job_id}", daemon=True)
        self._router = router
        self._future = future
        self._parent = parent
        self._display_id = uuid.uuid4().hex

    def run(self) -> None:
        future = self._future
        started = time.monotonic()
        shown = False
        next_update = started + _SHOW_STARTUP_AFTER
        while future.status.value == "queued":
            time.sleep(0.05)  # short, so "ready" follows the worker's start closely
            now = time.monotonic()
            if future.status.value != "queued" or now < next_update:
                continue
            next_update = now + _STARTUP_REFRESH
            text = (f"{future.function}: starting a worker and running its setup… "
                    f"{now - started:.1f} s")
            self._router.display(self._parent, text, self._display_id, update=shown)
            shown = True
        if shown:
            waited = time.monotonic() - started
            self._router.display(
                self._parent, f"{future.function}: worker ready after {waited:.1f} s",
                self._display_id, update=True,
            )
