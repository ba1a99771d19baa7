"""The kernel side of the JupyterLab "Sieve" panel's comm target.

`register(ipython)` (run by ``%load_ext sieve_jupyter``) registers the comm target, so a panel
can open a comm to this kernel, and opens one itself, so a panel that is already showing learns
at once that the kernel is ready. The notebook layer also calls it when the manager is created
in a kernel that only imported sieve_jupyter. `unregister(ipython)` undoes it and closes the
open channels.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sieve_jupyter.jupyter._channel import ManagerLike, PanelChannel
from sieve_jupyter.jupyter._channel_protocol import COMM_TARGET, PROTOCOL_VERSION, HelloMessage

__all__ = ["COMM_TARGET", "channels", "register", "unregister"]

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


def channels() -> list[PanelChannel]:
    """The open panel channels of this kernel (for diagnostics and tests)."""
    with _lock:
        return list(_channels)
