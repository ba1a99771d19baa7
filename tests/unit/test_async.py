"""Awaiting futures from async code, on asyncio (anyio's default backend)."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future
from typing import Any

import anyio

from sieve_jupyter import as_completed, gather, wait


def finish_later(futures: list[Future[Any]], delay: float = 0.05) -> None:
    def run() -> None:
        for index, future in enumerate(reversed(futures)):
            threading.Event().wait(delay)
            future.set_result(index)

    threading.Thread(target=run, daemon=True).start()


def test_as_completed_yields_in_completion_order() -> None:
    futures: list[Future[Any]] = [Future() for _ in range(3)]
    finish_later(futures)

    async def main() -> list[Future[Any]]:
        return [f async for f in as_completed(futures)]

    order = anyio.run(main)
    assert order == list(reversed(futures))


def test_wait_and_gather() -> None:
    futures: list[Future[Any]] = [Future() for _ in range(3)]
    failed: Future[Any] = Future()
    failed.set_exception(KeyError("k"))
    cancelled: Future[Any] = Future()
    cancelled.cancel()
    finish_later(futures)

    async def main() -> tuple[Any, list[Any]]:
        first = await wait(futures[0])
        everything = await gather([*futures, failed, cancelled], return_exceptions=True)
        return first, everything

    first, everything = anyio.run(main)
    assert first == 2
    assert everything[:3] == [2, 1, 0]
    assert isinstance(everything[3], KeyError)
    assert isinstance(everything[4], CancelledError)
