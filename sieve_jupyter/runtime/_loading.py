"""Loading a worker's code, and hot-swapping it: shared by every kind of worker.

A local or Docker worker (`worker.py`) and a Ray actor (`backends/_ray_actor.py`) receive the
same payload — the function, or the model class, pickled by value — and answer the same way:
`Ready` after `__setup__` ran, `SetupFailed` with the error; a swap gives the live instance the
new class, keeping its `__setup__` state, and answers `Swapped` or `SwapFailed` (the code it had
keeps answering). Only how the answer travels differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from sieve_jupyter.runtime._tracebacks import error_info, remember_sources
from sieve_jupyter.runtime.messages import (
    ErrorInfo,
    LoadOptions,
    Ready,
    SetupFailed,
    SwapFailed,
    Swapped,
)

__all__ = ["Loaded", "load_code", "swap_code"]


@dataclass
class Loaded:
    """The loaded code: what a call runs, and the model instance behind it (None for a
    function)."""

    target: Callable[..., Any]
    instance: Any = None


def load_code(
    payload: bytes,
    options: LoadOptions,
    describe: Callable[[BaseException], ErrorInfo] = error_info,
) -> tuple[Loaded | None, Ready | SetupFailed]:
    """Unpickle the function or model and run `__setup__` once; returns the loaded code (None
    if it failed) and the answer for the kernel. `describe` turns an error into its report."""
    remember_sources(options["sources"])
    started = time.perf_counter()
    try:
        obj = cloudpickle.loads(payload)
        if options["kind"] == "model":
            instance = obj()
            setup = getattr(instance, "__setup__", None)
            if setup is not None:
                setup()
            loaded = Loaded(instance.__predict__, instance)
        else:
            loaded = Loaded(obj)
    except BaseException as exc:  # noqa: BLE001 - reported to the kernel
        return None, SetupFailed(describe(exc))
    return loaded, Ready(time.perf_counter() - started, time.time())


def swap_code(
    loaded: Loaded,
    number: int,
    payload: bytes,
    sources: dict[str, list[str]],
    describe: Callable[[BaseException], ErrorInfo] = error_info,
) -> Swapped | SwapFailed:
    """Hot reload: the live instance takes the new class (keeping its state), or the new
    function replaces the old; `loaded` is updated in place unless the new code fails."""
    remember_sources(sources)
    try:
        new_class = cloudpickle.loads(payload)
        if loaded.instance is not None:
            loaded.instance.__class__ = new_class
            loaded.target = loaded.instance.__predict__
        else:
            loaded.target = new_class
    except BaseException as exc:  # noqa: BLE001 - reported to the kernel
        return SwapFailed(number, describe(exc))
    return Swapped(number, time.time())
