"""The kernel side of the JupyterLab "Sieve" panel's comm target.

`register(ipython)` (run by ``%load_ext sieve_jupyter``) registers the comm target, so a panel
can open a comm to this kernel, and opens one itself, so a panel that is already showing learns
at once that the kernel is ready. `attach_if_in_kernel` does the same lazily when the manager is
created in a kernel that only imported sieve_jupyter. `unregister(ipython)` undoes it and closes
the open channels.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from sieve_jupyter.jupyter._channel import ManagerLike, PanelChannel
from sieve_jupyter.jupyter._channel_protocol import COMM_TARGET, PROTOCOL_VERSION, HelloMessage

__all__ = ["COMM_TARGET", "attach_if_in_kernel", "channels", "register", "unregister"]

_log = logging.getLogger(__name__)

_lock = threading.Lock()
_registered_manager: Any = None  # the comm manager our target is registered with
_channels: list[PanelChannel] = []  # oldest first


def _get_manager() -> ManagerLike:
    from sieve_jupyter.manager import get_manager

    manager: ManagerLike = get_manager()
    return manager


def _forget(channel: PanelChannel) -> None:
    with _lock:
        if channel in _channels:
            _channels.remove(channel)


MAX_CHANNELS = 8
"""A reloaded page never closes its old comm; past this many, the oldest channels close."""


def _new_channel(comm: Any) -> PanelChannel:
    channel = PanelChannel(comm, _get_manager, on_closed=_forget)
    with _lock:
        _channels.append(channel)
        stale = _channels[:-MAX_CHANNELS]
    for old in stale:
        old.close()
    return channel


def _on_panel_open(comm: Any, msg: dict[str, Any]) -> None:
    """The comm target: a panel opened a comm, usually with a ``subscribe`` as its data."""
    _new_channel(comm).start(msg.get("content", {}).get("data"))


def _comm_manager(ipython: Any) -> Any:
    if getattr(ipython, "kernel", None) is None:
        return None  # terminal IPython: no frontend to talk to
    import comm as comm_package  # ipykernel installs its own manager into this package

    return comm_package.get_comm_manager()


def register(ipython: Any) -> None:
    """Register the panel's comm target on this kernel and greet a panel already showing it.

    Idempotent; does nothing outside a kernel (e.g. terminal IPython).
    """
    global _registered_manager
    manager = _comm_manager(ipython)
    if manager is None:
        return
    with _lock:
        if _registered_manager is manager:
            return
        _registered_manager = manager
    manager.register_target(COMM_TARGET, _on_panel_open)
    import comm as comm_package

    # A panel that tried before this point was told "not loaded"; this comm reaches it now.
    # Frontends without the panel close it, which closes the channel.
    hello: HelloMessage = {"v": PROTOCOL_VERSION, "type": "hello"}
    greeting = comm_package.create_comm(target_name=COMM_TARGET, data=dict(hello))
    _new_channel(greeting).start()


def unregister(ipython: Any) -> None:
    """Remove the comm target and close every open panel channel."""
    global _registered_manager
    manager = _comm_manager(ipython)
    with _lock:
        open_channels = list(_channels)
        was_registered = manager is not None and _registered_manager is manager
        if was_registered:
            _registered_manager = None
    for channel in open_channels:
        channel.close()
    if was_registered:
        manager.unregister_target(COMM_TARGET, _on_panel_open)


def attach_if_in_kernel(*_: Any) -> None:
    """`register` the running kernel's IPython, if this process is a Jupyter kernel.

    Meant for ``sieve_jupyter.manager.manager_created_hooks``: a kernel that only imported
    sieve_jupyter (no ``%load_ext``) still answers the panel once it defines a function.
    Cheap and silent elsewhere (worker processes, scripts, terminal IPython).
    """
    if "ipykernel" not in sys.modules:
        return
    try:
        from IPython.core.getipython import get_ipython

        ipython: Any = get_ipython()  # type: ignore[no-untyped-call]
        if ipython is not None:
            register(ipython)
    except Exception:  # noqa: BLE001 - the panel is optional; never break the caller
        _log.warning("sieve panel: could not register the comm target", exc_info=True)


def channels() -> list[PanelChannel]:
    """The open panel channels of this kernel (for diagnostics and tests)."""
    with _lock:
        return list(_channels)
