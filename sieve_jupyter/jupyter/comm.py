"""The kernel side of the JupyterLab "Sieve" panel's comm target.

`register(ipython)` (run by ``%load_ext sieve_jupyter``, and by the notebook layer when the
manager is created in a kernel that only imported sieve_jupyter) registers the comm target, so a
panel can open a comm to this kernel. `unregister(ipython)` undoes it and closes the open
channels.

The kernel never opens a comm itself: a frontend without the panel (nbclient, nbconvert,
papermill, a console) has no handler for it and says so. A panel that is already showing this
kernel learns that the target exists from a *beacon* instead: an ``update_display_data`` for a
display id no output ever shows (`BEACON_DISPLAY_ID`). The messaging protocol makes an update of
an unknown display a no-op for every frontend, while the panel sees it on the kernel's IOPub
stream and opens its comm then, on its own subshell, so it connects during a long cell too.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sieve_jupyter.jupyter._channel import ManagerLike, PanelChannel
from sieve_jupyter.jupyter._channel_protocol import (
    BEACON_DISPLAY_ID,
    BEACON_MIME,
    COMM_TARGET,
    PROTOCOL_VERSION,
    HelloMessage,
)

__all__ = ["BEACON_DISPLAY_ID", "COMM_TARGET", "announce", "channels", "register", "unregister"]

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
    """Register the panel's comm target on this kernel and announce it to a panel already
    showing the kernel (see the module docstring).

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
    announce(ipython.kernel)


def announce(kernel: Any) -> None:
    """Publish the beacon: a panel that was told "not loaded" opens its comm again.

    Sent straight on IOPub rather than through IPython's display machinery, so no
    ``%%capture`` or output widget can record it as an output.
    """
    hello: HelloMessage = {"v": PROTOCOL_VERSION, "type": "hello"}
    content = {
        "data": {BEACON_MIME: dict(hello)},
        "metadata": {},
        "transient": {"display_id": BEACON_DISPLAY_ID},
    }
    try:
        try:
            parent = kernel.get_parent("shell")
        except TypeError:  # older ipykernel
            parent = kernel.get_parent()
        kernel.session.send(
            kernel.iopub_socket,
            "update_display_data",
            content,
            parent=parent,
            ident=b"update_display_data",
        )
    except Exception:  # noqa: BLE001 - a panel that misses it connects on its next attempt
        _log.debug("could not announce the panel target", exc_info=True)


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
