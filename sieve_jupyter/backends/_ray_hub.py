"""`SieveHub`: the mailboxes between one kernel and its Ray workers (an async Ray actor).

A Ray worker runs its calls on the main thread of its actor, one at a time, so the actor cannot
take a method call while a job runs. What must reach a busy worker — a cancel, the answer to a
call it made to another function — and what a long job says while it runs — printed text,
progress, calls to other functions — goes through the hub instead: each worker long-polls its
mailbox from a thread of its own, and the kernel long-polls what the workers posted. The hub is
an asyncio actor with no CPU reserved, on the cluster's head node; it belongs to the kernel's Ray
job, so it ends with the kernel. Messages are plain tuples (`runtime.messages.pack`).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["SieveHub"]


class SieveHub:
    """One kernel's mailboxes: kernel -> each worker, and every worker -> the kernel."""

    def __init__(self) -> None:
        self._to_workers: dict[str, list[Any]] = {}
        self._worker_news: dict[str, asyncio.Event] = {}
        #: (worker id, [(seq, packed message), ...]) in the order the workers posted them
        self._to_kernel: list[tuple[str, list[tuple[int, Any]]]] = []
        self._kernel_news = asyncio.Event()
        #: stopped workers whose mailbox still holds something for them (their shutdown)
        self._leaving: set[str] = set()

    def _news(self, worker: str) -> asyncio.Event:
        event = self._worker_news.get(worker)
        if event is None:
            event = self._worker_news[worker] = asyncio.Event()
        return event

    # -- kernel -> worker --------------------------------------------------------------------

    async def post(self, worker: str, message: Any) -> None:
        """Leave `message` for `worker` (a cancel, a reply, a shutdown)."""
        self._to_workers.setdefault(worker, []).append(message)
        self._news(worker).set()

    async def take(self, worker: str, timeout: float) -> list[Any]:
        """What was left for `worker`, waiting up to `timeout` seconds for something."""
        event = self._news(worker)
        if not self._to_workers.get(worker):
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        event.clear()
        taken = self._to_workers.pop(worker, [])
        if worker in self._leaving:
            self._leaving.discard(worker)
            self._worker_news.pop(worker, None)
        return taken

    async def forget(self, worker: str) -> None:
        """Drop `worker`'s mailbox (it was stopped) once it took what was left in it: the
        kernel forgets a worker as soon as it asked it to leave, before it took the word."""
        if self._to_workers.get(worker):
            self._leaving.add(worker)
            return
        self._to_workers.pop(worker, None)
        self._worker_news.pop(worker, None)

    # -- worker -> kernel --------------------------------------------------------------------

    async def put(self, worker: str, messages: list[tuple[int, Any]]) -> None:
        """Hold `worker`'s numbered messages for the kernel; returning acknowledges them."""
        self._to_kernel.append((worker, messages))
        self._kernel_news.set()

    async def collect(self, timeout: float) -> list[tuple[str, list[tuple[int, Any]]]]:
        """Everything the workers posted since the last call, waiting up to `timeout` seconds
        for something."""
        if not self._to_kernel:
            try:
                await asyncio.wait_for(self._kernel_news.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        self._kernel_news.clear()
        posted, self._to_kernel = self._to_kernel, []
        return posted
