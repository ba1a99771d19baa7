"""Cancellation with real local workers: many jobs cancelled while queued in the kernel or
already sent to the worker never run, the rest finish, and the warm worker survives."""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sieve_jupyter as sieve
from sieve_jupyter.manager import JobStatus

Unique = Callable[[str], str]


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def _cancel_most(futures: list[Any]) -> tuple[list[int], list[int]]:
    """Cancel three in four jobs (interleaved); returns (kept, cancelled) indexes."""
    kept, cancelled = [], []
    for index, future in enumerate(futures):
        if index % 4:
            assert future.cancel()
            cancelled.append(index)
        else:
            kept.append(index)
    return kept, cancelled


def _ran(directory: Path) -> list[int]:
    return sorted(int(p.name.removeprefix("ran-")) for p in directory.glob("ran-*"))


def test_cancelled_jobs_waiting_for_setup_never_run(unique: Unique, tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    @sieve.Model(name=unique("gated-setup"))
    class GatedSetup:
        def __setup__(self) -> None:
            deadline = time.monotonic() + 60
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.01)

        def __predict__(self, index: int) -> int:
            (tmp_path / f"ran-{index}").touch()
            time.sleep(0.005)
            return index

    futures = [GatedSetup.push(i) for i in range(200)]
    kept, cancelled = _cancel_most(futures)
    assert len(cancelled) == 150
    gate.touch()
    assert [futures[i].result(timeout=60) for i in kept] == kept
    assert _ran(tmp_path) == kept
    for index in cancelled:
        assert futures[index].cancelled() and futures[index].status is JobStatus.CANCELLED
    with pytest.raises(concurrent.futures.CancelledError):
        futures[cancelled[0]].result(timeout=1)


def test_cancelled_jobs_already_sent_to_the_worker_never_run(
    unique: Unique, tmp_path: Path
) -> None:
    gate_file = tmp_path / "gate"
    gate_name = unique("gate")

    @sieve.function(name=gate_name)
    def gate(path: str) -> bool:
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return True

    @sieve.function(name=unique("pipelined"))
    def pipelined(index: int) -> int:
        if index == 0:
            # Wait on another function: its answer comes back on the control connection, after
            # the cancels the test sent there, so they have all arrived when this returns.
            sieve.function.get(gate_name).run(str(gate_file))
        (tmp_path / f"ran-{index}").touch()
        return index

    assert gate.run(str(tmp_path)) is True  # warm
    # warm, and timed as fast, so the pool sends many calls ahead to the worker: the cancels
    # must then reach calls the worker already holds
    assert [pipelined.run(-1) for _ in range(5)] == [-1] * 5
    futures = [pipelined.push(i) for i in range(200)]
    wait_for(lambda: futures[0].running())
    kept, cancelled = _cancel_most(futures)
    gate_file.touch()
    assert [futures[i].result(timeout=60) for i in kept] == kept
    assert _ran(tmp_path) == [-1, *kept]
    assert all(futures[i].cancelled() for i in cancelled)
    assert pipelined.run(7) == 7  # the worker is still serving


def test_cancelling_a_job_that_prints_keeps_the_warm_worker(unique: Unique) -> None:
    """A cancel lands while the job writes to the socket; the frame must stay whole (half a
    frame corrupted the channel and cost the warm worker)."""

    @sieve.function(name=unique("chatty"), restart_on_error=False)
    def chatty(mode: str) -> int:
        if mode == "pid":
            return os.getpid()
        line = "x" * 100_000
        while True:
            print(line)

    pid = chatty.run("pid")
    for _ in range(10):
        future = chatty.push("talk")
        wait_for(lambda f=future: len(f.logs) > 3)  # mid-stream
        assert future.cancel()
        assert chatty.run("pid") == pid
