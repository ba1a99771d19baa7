"""`CallerCpu`: a worker kept on its caller's CPU during quick direct calls
(manager/_affinity.py), against a real child process's CPU affinity."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from support import thread_on_cpu

from sieve_jupyter.manager._affinity import _BACK_OFF, CallerCpu, current_cpu

pytestmark = pytest.mark.skipif(
    current_cpu() is None, reason="no sched_getcpu / sched_setaffinity on this system"
)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def cpus() -> list[int]:
    """This process's CPUs, for a test that moves a caller between two of them."""
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < 2:
        pytest.skip("needs two CPUs")
    return mine


def test_follow_keeps_the_process_on_the_callers_cpu_and_release_gives_its_own_back(
    child: subprocess.Popen[bytes],
) -> None:
    home = os.sched_getaffinity(child.pid)
    cpu = CallerCpu(child.pid)
    assert cpu.home is None and cpu.kept_on is None  # (read when first followed)

    here = min(os.sched_getaffinity(0))
    with thread_on_cpu(here):  # (this thread stays put while it is checked)
        assert cpu.follow()
        assert cpu.home == home and cpu.kept_on == here
        assert os.sched_getaffinity(child.pid) == {here}

    cpu.release()
    assert cpu.kept_on is None
    assert os.sched_getaffinity(child.pid) == home


def test_a_caller_on_a_cpu_the_worker_may_not_use_leaves_it_on_its_own(
    child: subprocess.Popen[bytes], cpus: list[int]
) -> None:
    cpu = CallerCpu(child.pid)
    # the worker's own CPUs, chosen after it started (in its setup, or by hand): kept
    os.sched_setaffinity(child.pid, {cpus[0]})
    with thread_on_cpu(cpus[1]):
        cpu.follow()
    assert cpu.kept_on is None
    assert os.sched_getaffinity(child.pid) == {cpus[0]}


def test_a_process_that_is_gone_turns_following_off(child: subprocess.Popen[bytes]) -> None:
    cpu = CallerCpu(child.pid)
    child.kill()
    child.wait()  # (reaped: the pid no longer names it)
    assert not cpu.follow()
    assert cpu.disabled and cpu.kept_on is None
    cpu.follow()  # no further attempt, no error
    cpu.release()


def test_a_stopped_one_never_moves_the_process_again(child: subprocess.Popen[bytes]) -> None:
    home = os.sched_getaffinity(child.pid)
    cpu = CallerCpu(child.pid)
    cpu.stop()  # (what the pool does before the worker's process is reaped)
    cpu.follow()
    assert cpu.kept_on is None
    assert os.sched_getaffinity(child.pid) == home


def test_a_caller_that_moves_to_another_cpu_is_not_followed_for_a_while(
    child: subprocess.Popen[bytes], cpus: list[int]
) -> None:
    home = os.sched_getaffinity(child.pid)
    cpu = CallerCpu(child.pid)
    with thread_on_cpu(cpus[0]):
        assert cpu.follow() and cpu.follow()  # kept on the caller's CPU; no change
        assert os.sched_getaffinity(child.pid) == {cpus[0]}
    with thread_on_cpu(cpus[1]):  # the caller moved: the worker gets its CPUs back
        assert not cpu.follow()
        assert os.sched_getaffinity(child.pid) == home
        assert not any(cpu.follow() for _ in range(_BACK_OFF))
        assert cpu.follow()  # tried again
        assert os.sched_getaffinity(child.pid) == {cpus[1]}
    with thread_on_cpu(cpus[0]):  # moved again: left alone twice as long
        assert not any(cpu.follow() for _ in range(2 * _BACK_OFF + 1))
        assert cpu.follow()
