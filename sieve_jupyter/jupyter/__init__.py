"""The notebook layer: magics, output routing, widgets and the side panel's comm channel.

`%load_ext sieve_jupyter` registers the magics and attaches the rest. In a Jupyter kernel the
output routing, the traceback display and the panel channel are attached as soon as the
manager starts, even without `%load_ext`, so `import sieve_jupyter as sieve` alone already
shows worker output in the right cell and job errors like local ones (and the package's
own errors without its frames, from the import on).
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["attach", "load_ipython_extension", "unload_ipython_extension"]

# id(shell) -> what was attached to it
_attached: dict[int, dict[str, Any]] = {}


def attach(ipython: Any) -> None:
    """Route worker output to cells, show job errors as IPython shows local ones, and register
    the panel's comm target on this shell (idempotent)."""
    from sieve_jupyter.jupyter import _tracebacks
    from sieve_jupyter.jupyter._routing import OutputRouter
    from sieve_jupyter.manager import get_manager

    _tracebacks.install()

    # Creating the manager runs its hooks, which attach to this shell too: get it first so the
    # check below sees their work and nothing is attached twice.
    manager = get_manager()
    state = _attached.setdefault(id(ipython), {})
    if "router" not in state:
        from sieve_jupyter.sdk._script_output import routed_elsewhere

        state["router"] = OutputRouter(ipython, manager)
        routed_elsewhere(manager)  # (terminal IPython: the router prints, not the script's way)
    if "display" not in state:
        from sieve_jupyter.manager import JobFuture

        # A future left as a cell's last expression shows as a live status widget.
        ipython.display_formatter.ipython_display_formatter.for_type(JobFuture, _display_job)
        state["display"] = True
    if "comm" not in state and getattr(ipython, "kernel", None) is not None:
        from sieve_jupyter.jupyter import comm

        comm.register(ipython)
        state["comm"] = True


def _display_job(future: Any) -> None:
    try:
        from sieve_jupyter.jupyter.widgets import display_future
    except ImportError:  # no ipywidgets: the text form
        from IPython.display import display

        display({"text/plain": repr(future)}, raw=True)  # type: ignore[no-untyped-call]
        return
    display_future(future)


def attach_running_kernel(*_: Any) -> None:
    """Manager-created hook: attach to the running kernel's shell, if this is a kernel."""
    if "ipykernel" not in sys.modules:
        return
    from IPython.core.getipython import get_ipython

    ipython = get_ipython()
    if ipython is not None and getattr(ipython, "kernel", None) is not None:
        attach(ipython)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext sieve_jupyter`: magics, output routing, panel channel. Loading twice is
    harmless."""
    state = _attached.setdefault(id(ipython), {})
    if "magics" not in state:
        from sieve_jupyter.jupyter._magics import SieveMagics

        magics = SieveMagics(ipython)
        ipython.register_magics(magics)
        state["magics"] = magics
    attach(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext sieve_jupyter`: remove the magics, the routing and the panel channel.
    Registered functions and their workers stay."""
    state = _attached.pop(id(ipython), {})
    magics = state.get("magics")
    if magics is not None:
        for kind in ("line", "cell"):
            for name in list(magics.magics[kind]):
                ipython.magics_manager.magics[kind].pop(name, None)
    router = state.get("router")
    if router is not None:
        from sieve_jupyter.sdk._script_output import routed_elsewhere

        router.close()
        routed_elsewhere(None)
    if state.get("display"):
        from sieve_jupyter.manager import JobFuture

        ipython.display_formatter.ipython_display_formatter.pop(JobFuture, None)
    if state.get("comm"):
        from sieve_jupyter.jupyter import comm

        comm.unregister(ipython)
