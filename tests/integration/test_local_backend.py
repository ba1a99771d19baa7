"""The local backend with real worker processes: GPUs, dependencies, Python versions.

These are the checks that run before (or while) a local worker starts: what this machine cannot
honour fails at `.push()` with the fix in the message, or warns once per registration. Process
lifetimes (no orphans) are in test_worker_lifetime.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Unique, wait_for

import sieve_jupyter as sieve
from sieve_jupyter import SieveWarning, _config
from sieve_jupyter.backends import BACKENDS, WorkerLaunch
from sieve_jupyter.backends.local import LocalBackend, LocalProcess
from sieve_jupyter.manager import get_manager
from sieve_jupyter.manager._gpu import GpuAllocator, GpuFallbackWarning
from sieve_jupyter.manager._gpu_inventory import GpuDevice, GpuInventory


@pytest.fixture
def gpu_fallback() -> Iterator[None]:
    before = sieve.config.gpu_fallback
    yield
    sieve.configure(gpu_fallback=before)


@pytest.fixture
def two_t4_cards() -> Iterator[None]:
    """The manager believes this machine has two T4 cards (an injected inventory; the workers
    are real processes and see what the allocator assigned them)."""
    gpus = get_manager().gpus
    saved = gpus._allocator
    gpus._allocator = GpuAllocator(
        GpuInventory.of(
            [
                GpuDevice(0, "GPU-00000000-aaaa", "Tesla T4", 15360),
                GpuDevice(1, "GPU-11111111-bbbb", "Tesla T4", 15360),
            ]
        )
    )
    yield
    gpus._allocator = saved


def gpu_environment() -> dict[str, str]:
    keys = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
    return {k: os.environ[k] for k in keys if k in os.environ} | {"pid": str(os.getpid())}


# -- GPUs --------------------------------------------------------------------------------------


def test_gpu_request_without_a_gpu_fails_at_push_and_starts_nothing(unique: Unique) -> None:
    manager = get_manager()
    if manager.gpus.allocator.inventory.devices:
        pytest.skip("this machine has a GPU")

    @sieve.function(name=unique("needs-t4"), gpu=sieve.gpu.T4())
    def needs_t4() -> str:
        return "ran"

    jobs_before = manager.jobs()
    with pytest.raises(sieve.GpuUnavailableError) as caught:
        needs_t4.push()
    message = str(caught.value)
    assert "T4" in message
    assert "no NVIDIA GPU detected" in message
    assert "Run where such a card is" in message  # the fix
    assert manager.jobs() == jobs_before
    assert manager.record(needs_t4.name).pool is None  # no pool, so no worker
    assert needs_t4.workers == []


def test_gpu_fallback_to_cpu_warns_and_runs_without_a_visible_gpu(
    unique: Unique, gpu_fallback: None
) -> None:
    manager = get_manager()
    if manager.gpus.allocator.inventory.devices:
        pytest.skip("this machine has a GPU")

    @sieve.function(name=unique("t4-or-cpu"), gpu=sieve.gpu.T4())
    def t4_or_cpu() -> dict[str, str]:
        return gpu_environment()

    # Turned on after a first failure: the setting must still take effect.
    with pytest.raises(sieve.GpuUnavailableError):
        t4_or_cpu.push()
    sieve.configure(gpu_fallback="cpu")
    with pytest.warns(GpuFallbackWarning, match="T4"):
        future = t4_or_cpu.push()
    seen = future.result(timeout=60)
    assert seen["CUDA_VISIBLE_DEVICES"] == ""
    assert "CUDA_DEVICE_ORDER" not in seen or seen["CUDA_DEVICE_ORDER"] != "PCI_BUS_ID"


def test_a_function_without_gpu_sees_no_gpu(unique: Unique, two_t4_cards: None) -> None:
    @sieve.function(name=unique("cpu-only"))
    def cpu_only() -> dict[str, str]:
        return gpu_environment()

    seen = cpu_only.run()
    # As on Sieve: even on a machine with GPUs, a function that did not ask sees none.
    assert seen["CUDA_VISIBLE_DEVICES"] == ""


def test_split_workers_share_one_card_and_see_it(
    unique: Unique, two_t4_cards: None, tmp_path: Path
) -> None:
    @sieve.function(name=unique("shared-t4"), gpu=sieve.gpu.T4(split=2), workers=2)
    def shared_t4(barrier: str) -> dict[str, str]:
        # Hold each job until both workers have one, so the two results come from two workers.
        Path(barrier, str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return gpu_environment()

    @sieve.function(name=unique("whole-t4"), gpu=sieve.gpu.T4())
    def whole_t4() -> dict[str, str]:
        return gpu_environment()

    warm_up = tmp_path / "warm-up"
    warm_up.mkdir()
    (warm_up / "fake").touch()  # let the first job through alone
    shared_t4.run(str(warm_up))
    wait_for(lambda: [w["state"] for w in shared_t4.workers] == ["ready", "ready"])

    barrier = tmp_path / "barrier"
    barrier.mkdir()
    futures = [shared_t4.push(str(barrier)) for _ in range(2)]
    seen = [f.result(timeout=60) for f in futures]
    assert len({s["pid"] for s in seen}) == 2, "both workers should have served a job"
    for environment in seen:
        assert environment["CUDA_VISIBLE_DEVICES"] == "0"
        assert environment["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert [w["gpu"] for w in shared_t4.workers] == ["0", "0"]

    # The shared card is taken by the split request; a whole-card request gets the other one.
    whole = whole_t4.run()
    assert whole["CUDA_VISIBLE_DEVICES"] == "1"
    assert whole["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_stopping_workers_frees_their_card(unique: Unique, two_t4_cards: None) -> None:
    @sieve.function(name=unique("first-t4"), gpu=sieve.gpu.T4(), workers=2)
    def first() -> str:
        return os.environ["CUDA_VISIBLE_DEVICES"]

    @sieve.function(name=unique("late-t4"), gpu=sieve.gpu.T4())
    def late() -> str:
        return os.environ["CUDA_VISIBLE_DEVICES"]

    assert first.run() in ("0", "1")
    wait_for(lambda: sorted(w["gpu"] for w in first.workers) == ["0", "1"])
    with pytest.raises(sieve.GpuUnavailableError, match="taken"):
        late.push()
    first.stop()
    assert first.state == "stopped"
    wait_for(lambda: not get_manager().gpus.allocator.assignments())
    assert first.workers == [] and first.state == "stopped"  # and no replacement started
    assert late.run() == "0"


def test_more_gpu_workers_than_cards_fail_at_push_before_any_job(unique: Unique) -> None:
    gpus = get_manager().gpus
    saved = gpus._allocator
    gpus._allocator = GpuAllocator(GpuInventory.of([GpuDevice(0, "GPU-0", "Tesla T4", 15360)]))
    try:

        @sieve.function(name=unique("two-t4"), gpu=sieve.gpu.T4(), workers=2)
        def two_t4() -> str:
            return os.environ["CUDA_VISIBLE_DEVICES"]

        jobs_before = get_manager().jobs()
        with pytest.raises(sieve.GpuUnavailableError) as caught:
            two_t4.push()
        message = str(caught.value)
        assert "workers=2" in message and "sieve.gpu.T4(split=2)" in message
        assert get_manager().jobs() == jobs_before  # no job ran behind the error
        assert two_t4.workers == []

        @sieve.function(name=unique("two-halves"), gpu=sieve.gpu.T4(split=2), workers=2)
        def two_halves() -> str:
            return os.environ["CUDA_VISIBLE_DEVICES"]

        assert two_halves.run() == "0"
        two_halves.stop()
    finally:
        gpus._allocator = saved


# -- dependencies and container-only options ---------------------------------------------------


def test_missing_python_package_fails_at_push_with_the_fix(unique: Unique) -> None:
    @sieve.function(name=unique("needs-pkg"), python_packages=["definitely-not-installed-pkg"])
    def needs_pkg() -> None:
        pass

    jobs_before = get_manager().jobs()
    with pytest.raises(sieve.DependencyError) as caught:
        needs_pkg.push()
    message = str(caught.value)
    assert "definitely-not-installed-pkg" in message
    assert "backend='docker'" in message
    assert get_manager().jobs() == jobs_before
    assert needs_pkg.workers == []


def test_installed_package_with_another_version_warns_and_runs(unique: Unique) -> None:
    @sieve.function(name=unique("old-pickle"), python_packages=["cloudpickle<0.1"])
    def old_pickle() -> int:
        return 42

    with pytest.warns(SieveWarning, match="cloudpickle"):
        future = old_pickle.push()
    assert future.result(timeout=60) == 42


def test_container_only_options_warn_once_per_registration(unique: Unique) -> None:
    other_python = "3.10" if sys.version_info[:2] != (3, 10) else "3.11"
    name = unique("container-only")

    def register(system_packages: list[str]) -> Any:
        @sieve.function(
            name=name,
            system_packages=system_packages,
            run_commands=["echo hi"],
            python_version=other_python,
        )
        def container_only(x: int) -> int:
            return x + 1

        return container_only

    def notes_while(calls: Callable[[], object]) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            calls()
        for w in caught:
            if issubclass(w.category, SieveWarning):
                # the warning points at the user's call, not at the manager's internals
                assert w.filename == __file__
        return [str(w.message) for w in caught if issubclass(w.category, SieveWarning)]

    handle = register(["ffmpeg"])
    results: list[int] = []
    notes = notes_while(
        lambda: results.extend([handle.run(0), handle.push(1).result(timeout=60), handle.run(2)])
    )
    assert results == [1, 2, 3]
    assert len(notes) == 1, notes
    for part in ("ffmpeg", "echo hi", other_python, "backend='docker'"):
        assert part in notes[0]

    # Re-running the cell unchanged swaps the code into the warm worker: nothing new to say.
    handle = register(["ffmpeg"])
    assert notes_while(lambda: handle.run(5)) == []
    # A changed environment is a new registration: said again, once.
    handle = register(["ffmpeg", "libsndfile1"])
    notes = notes_while(lambda: [handle.run(1), handle.run(2)])
    assert len(notes) == 1 and "libsndfile1" in notes[0]


# -- Python version check ----------------------------------------------------------------------


class ScriptedWorker(LocalBackend):
    """A local backend that starts the real worker after a few lines of Python (`prelude`),
    to change one thing about the worker's world."""

    name = "scripted-worker"

    def __init__(self, prelude: str) -> None:
        self.prelude = textwrap.dedent(prelude)

    def start_worker(self, launch: WorkerLaunch) -> LocalProcess:
        code = self.prelude + textwrap.dedent(
            f"""
            from sieve_jupyter.runtime.worker import main
            main(["--dir", {str(launch.ipc_dir)!r}, "--worker-id", {launch.worker_id!r}])
            """
        )
        popen = subprocess.Popen(
            [sys.executable, "-c", code],
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path),
                "CUDA_VISIBLE_DEVICES": "",
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return LocalProcess(popen)


@pytest.fixture
def scripted_backend(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    def install(prelude: str) -> str:
        backend = ScriptedWorker(prelude)
        # a name the settings accept
        monkeypatch.setattr(_config, "BACKEND_NAMES", (*_config.BACKEND_NAMES, backend.name))
        monkeypatch.setitem(BACKENDS, backend.name, "unused:Unused")
        monkeypatch.setitem(get_manager()._backends, backend.name, backend)
        return backend.name

    return install


@pytest.fixture
def liar_backend(scripted_backend: Callable[[str], str]) -> str:
    """Its worker claims another Python minor version (as a container built for another
    Python would report); only `sys.version_info` is altered, after the runtime's imports."""
    minor = sys.version_info.minor - 1
    return scripted_backend(
        f"""
        import collections, sys
        import sieve_jupyter.runtime.worker
        V = collections.namedtuple("V", "major minor micro releaselevel serial")
        sys.version_info = V(3, {minor}, 0, "final", 0)
        """
    )


def test_worker_serves_without_the_notebook_packages(
    unique: Unique, scripted_backend: Callable[[str], str]
) -> None:
    """What a slim container has: no pydantic, IPython, ipywidgets, yaml or packaging."""
    backend = scripted_backend(
        """
        import sys
        for name in ("pydantic", "IPython", "ipywidgets", "yaml", "packaging", "numpy"):
            sys.modules[name] = None  # import now raises ImportError
        """
    )

    @sieve.Model(name=unique("slim"), backend=backend)
    class Slim:
        def __setup__(self) -> None:
            self.greeting = "hello"

        def __predict__(self, name: str) -> Any:
            import sys

            sieve.report_progress(1.0, "done")
            blocked = [m for m in ("pydantic", "IPython", "ipywidgets") if sys.modules.get(m)]
            return f"{self.greeting} {name}", blocked

    future = Slim.push("slim")
    assert future.result(timeout=60) == ("hello slim", [])
    assert future.progress == (1.0, "done")


def test_worker_with_another_python_minor_fails_the_job_with_the_fix(
    unique: Unique, liar_backend: str
) -> None:
    @sieve.function(name=unique("wrong-python"), backend=liar_backend)
    def wrong_python() -> int:
        return 1

    future = wrong_python.push()
    with pytest.raises(sieve.PythonVersionMismatchError) as caught:
        future.result(timeout=60)
    message = str(caught.value)
    kernel = f"{sys.version_info[0]}.{sys.version_info[1]}"
    liar = f"3.{sys.version_info.minor - 1}"
    assert f"runs Python {liar}" in message and f"kernel runs {kernel}" in message
    assert "Fix:" in message and "same minor version" in message
    assert future.status.value == "error"
    # the refused worker does not linger, and no replacement is started behind the user's back
    wait_for(lambda: wrong_python.workers == [])
    assert wrong_python.state == "error"
