"""`deferred_interrupts`: the stop button's SIGINT, arriving while a call is handed to an
engine, is held back until the block ends, then reaches the handler that was installed."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from sieve_jupyter.manager._linked_worker import deferred_interrupts


@pytest.fixture
def sigint_handler() -> Any:
    seen: list[str] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append(f"handler {signum}")

    previous = signal.signal(signal.SIGINT, handler)
    yield handler, seen
    signal.signal(signal.SIGINT, previous)


def _interrupt_self() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)  # (Python runs the handler at its next check, here)


def test_an_interrupt_in_the_block_reaches_the_handler_after_it(sigint_handler: Any) -> None:
    handler, seen = sigint_handler
    with deferred_interrupts():
        _interrupt_self()
        seen.append("block ends")
    assert seen == ["block ends", f"handler {int(signal.SIGINT)}"]
    assert signal.getsignal(signal.SIGINT) is handler


def test_no_interrupt_leaves_the_handler_in_place(sigint_handler: Any) -> None:
    handler, seen = sigint_handler
    with deferred_interrupts():
        pass
    assert seen == []
    assert signal.getsignal(signal.SIGINT) is handler
    _interrupt_self()
    assert seen == [f"handler {int(signal.SIGINT)}"]


def test_an_exception_in_the_block_still_restores_the_handler(sigint_handler: Any) -> None:
    handler, _ = sigint_handler
    with pytest.raises(RuntimeError), deferred_interrupts():
        raise RuntimeError("in the block")
    assert signal.getsignal(signal.SIGINT) is handler


def test_an_ignored_interrupt_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferred_interrupts():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            _interrupt_self()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_off_the_main_thread_it_changes_nothing(sigint_handler: Any) -> None:
    handler, _ = sigint_handler
    during: list[Any] = []

    def other() -> None:
        with deferred_interrupts():
            during.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert during == [handler]
