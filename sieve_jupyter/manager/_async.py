"""Wait for futures from async code (anyio: asyncio or trio), without blocking the event loop.

    async for future in sieve.as_completed(futures):
        print(future.result())

Done callbacks put finished futures on a thread-safe queue; the async side drains it from a
worker thread in short, cancellable waits, so a cancelled task leaves nothing blocked for long.
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import CancelledError, Future
from typing import Any, TypeVar

import anyio
import anyio.to_thread

__all__ = ["as_completed", "gather", "wait"]

T = TypeVar("T")
_WAIT_SLICE = 0.25  # seconds a helper thread blocks before the loop checks for cancellation


async def as_completed(futures: Iterable[Future[T]]) -> AsyncIterator[Future[T]]:
    """Yield each future as it finishes, like `concurrent.futures.as_completed`, but awaitably."""
    pending = list(dict.fromkeys(futures))  # a future given twice is yielded once
    finished: queue.SimpleQueue[Future[T]] = queue.SimpleQueue()
    for future in pending:
        future.add_done_callback(finished.put)  # O(1), safe from any thread
    remaining = len(pending)
    while remaining:
        try:
            future = finished.get_nowait()
        except queue.Empty:
            try:
                future = await anyio.to_thread.run_sync(
                    finished.get, True, _WAIT_SLICE, abandon_on_cancel=True
                )
            except queue.Empty:
                continue
        remaining -= 1
        yield future


async def wait(future: Future[T]) -> T:
    """Return the future's result (or raise its exception) once it is done."""
    async for done in as_completed([future]):
        return done.result()
    raise AssertionError("unreachable: as_completed yields every future")  # pragma: no cover


async def gather(futures: Iterable[Future[T]], *, return_exceptions: bool = False) -> list[Any]:
    """Results of all futures in the order given; with `return_exceptions`, errors are returned
    in place of results instead of raising the first one."""
    ordered = list(futures)
    async for _ in as_completed(ordered):
        pass
    results: list[Any] = []
    for future in ordered:
        if return_exceptions and future.cancelled():
            results.append(CancelledError())
        elif return_exceptions and future.exception() is not None:
            results.append(future.exception())
        else:
            results.append(future.result())
    return results
