"""Re-registering a model with an unchanged `__setup__` swaps the new code into its warm
workers, and says which workers took it; a swap that fails in a worker changes nothing."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Unique, wait_for

import sieve_jupyter as sieve
from sieve_jupyter.sdk import register


@pytest.fixture
def kernel_only_module(tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Makes a module this process can import but workers already running cannot (local
    workers get the kernel's `sys.path` as it was when they started)."""
    name = f"kernel_only_{os.urandom(4).hex()}"
    (tmp_path / f"{name}.py").write_text('VALUE = "v2"\n')

    def make() -> Any:
        sys.path.insert(0, str(tmp_path))
        return __import__(name)

    yield make
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))
    sys.modules.pop(name, None)


def test_a_swap_keeps_setup_and_names_the_workers_that_took_it(
    backend: str, unique: Unique
) -> None:
    name = unique("swapper")

    class Swapper:
        def __setup__(self) -> None:
            self.token = os.urandom(4).hex()

        def __predict__(self) -> str:
            return "v1:" + self.token

    handle, first = register(Swapper, kind="model", name=name, backend=backend, workers=2)
    assert first.outcome == "new"
    assert handle.run().startswith("v1:")
    wait_for(lambda: [w["state"] for w in handle.workers] == ["ready", "ready"])
    setups = {w["id"]: w["setup_at"] for w in handle.workers}

    class Swapper:  # type: ignore[no-redef]
        def __setup__(self) -> None:
            self.token = os.urandom(4).hex()

        def __predict__(self) -> str:
            return "v2:" + self.token

    handle, second = register(Swapper, kind="model", name=name, backend=backend, workers=2)
    assert second.outcome == "swapped"
    assert sorted(second.swapped_workers) == sorted(setups)
    assert all(handle.run().startswith("v2:") for _ in range(4))
    assert {w["id"]: w["setup_at"] for w in handle.workers} == setups  # no __setup__ again


def first_version(name: str, backend: str | None = None) -> Any:
    """A model registered as `name` whose later versions below keep its `__setup__`
    (so registering one of them swaps its code into warm workers)."""

    @sieve.Model(name=name, backend=backend)
    class Swapper:
        def __setup__(self) -> None:
            self.token = os.urandom(4).hex()

        def __predict__(self) -> str:
            return "v1:" + self.token

    return Swapper


def test_a_swap_that_fails_in_a_worker_changes_nothing(
    backend: str, unique: Unique, kernel_only_module: Callable[[], Any]
) -> None:
    name = unique("swapper")
    Swapper = first_version(name, backend)
    before = Swapper.run()
    (worker,) = [w["id"] for w in Swapper.workers]
    module = kernel_only_module()

    with pytest.raises(sieve.SwapError) as info:

        @sieve.Model(name=name, backend=backend)
        class Swapper:  # type: ignore[no-redef]  # noqa: F811
            def __setup__(self) -> None:
                self.token = os.urandom(4).hex()

            def __predict__(self) -> str:
                return module.VALUE + ":" + self.token

    message = str(info.value)
    assert f"failed to load in worker {worker}" in message
    assert f"No module named '{module.__name__}'" in message  # the worker's own traceback
    assert f"the previous code still answers calls on worker {worker}" in message
    assert "--fresh-setup" in message
    # The registration and the warm instance are as they were.
    assert sieve.function.get(name).run() == before
    assert Swapper.run() == before


def test_a_swap_whose_code_cannot_travel_changes_nothing(unique: Unique) -> None:
    """The new code is pickled before any worker is touched: when it cannot be, the error says
    why and the registration stays as it was."""
    import threading

    name = unique("swapper")
    Swapper = first_version(name)
    before = Swapper.run()
    lock = threading.Lock()
    with pytest.raises(sieve.SieveError, match="its code cannot be sent to a worker"):

        @sieve.Model(name=name)
        class Swapper:  # type: ignore[no-redef]  # noqa: F811
            def __setup__(self) -> None:
                self.token = os.urandom(4).hex()

            def __predict__(self) -> str:
                with lock:
                    return "v2:" + self.token

    assert sieve.function.get(name).run() == before
    assert Swapper.run() == before
