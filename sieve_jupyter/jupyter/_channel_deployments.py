"""The panel's Deployments section, kernel side: lists this user's deployments while the panel
watches them, and undeploys one when asked.

Deployments belong to the deployment layer, above this one: they are reached through
`_hooks.deployment_listers` (the public face registers the deployment layer's lister there).
A listing asks every deployment's health check over HTTP (and the Docker engine, when one
answers), so it runs on a thread of its own -- never the kernel's main thread, so no cell
waits for it -- every `DEPLOYMENTS_INTERVAL` seconds, only while the panel says the section is
visible, and a message goes out only when the list changed (or the panel just started
watching, or an undeploy just finished).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sieve_jupyter import _hooks
from sieve_jupyter.jupyter._channel_protocol import (
    DEPLOYMENTS_INTERVAL,
    PROTOCOL_VERSION,
    DeploymentRow,
    DeploymentsMessage,
)
from sieve_jupyter.jupyter._channel_rows import deployment_row

__all__ = ["DeploymentsWatcher", "deployments_available"]

_log = logging.getLogger(__name__)


def _lister() -> _hooks.DeploymentLister | None:
    return _hooks.deployment_listers[0] if _hooks.deployment_listers else None


def deployments_available() -> bool:
    """Whether the panel can show deployments (the deployment layer is hooked in)."""
    return _lister() is not None


class DeploymentsWatcher:
    """Lists deployments for one panel channel.

    Args:
        send: sends one message to the panel (the channel's, which drops it once closed).
        interval: seconds between two listings while watched.
        clock: the kernel's clock (epoch seconds), for the panel's uptimes.
    """

    def __init__(
        self,
        send: Callable[[DeploymentsMessage], None],
        *,
        interval: float = DEPLOYMENTS_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._send = send
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._watching = False
        self._force = False  # send the next listing even if it did not change
        self._last: tuple[list[DeploymentRow], str | None] | None = None
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, watching: bool) -> None:
        """The panel shows (True) or hides (False) its Deployments section."""
        if _lister() is None:
            return
        with self._lock:
            self._watching = watching
            if watching:
                self._force = True
            start = watching and self._thread is None
            if start:
                self._thread = threading.Thread(
                    target=self._loop, name="sieve-panel-deployments", daemon=True
                )
        if start and self._thread is not None:
            self._thread.start()
        self._wake.set()

    def refresh(self) -> None:
        """List again now, and send the list even if unchanged (after an undeploy)."""
        with self._lock:
            self._force = True
        self._wake.set()

    def undeploy(self, name: str) -> None:
        """``sieve.undeploy(name)``; raises as it does. The list is refreshed either way."""
        lister = _lister()
        if lister is None:
            raise RuntimeError("deployments are not available in this kernel")
        try:
            lister.undeploy(name)
        finally:
            self.refresh()

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                watching = self._watching
            if watching:
                try:
                    self.list_once()
                except Exception:  # noqa: BLE001 - keep watching; the next round retries
                    _log.exception("sieve panel: listing the deployments failed")
            # Woken early by watch/refresh/close; otherwise the next round is an interval away
            # (or never, while no panel watches).
            self._wake.wait(self._interval if watching else None)
            self._wake.clear()

    def list_once(self) -> bool:
        """List the deployments and send them if they changed; returns whether it sent."""
        lister = _lister()
        if lister is None:
            return False
        user = ""
        error: str | None = None
        rows: list[DeploymentRow] = []
        try:
            user = lister.user()
            rows = [deployment_row(d) for d in lister.rows()]
        except Exception as exc:  # noqa: BLE001 - shown in the section, not raised
            error = f"the deployments could not be listed: {type(exc).__name__}: {exc}"
        rows.sort(key=lambda r: (r["name"], r["version"]))
        with self._lock:
            force, self._force = self._force, False
            if not force and self._last == (rows, error):
                return False
            self._last = (rows, error)
        message: DeploymentsMessage = {
            "v": PROTOCOL_VERSION,
            "type": "deployments",
            "server_time": self._clock(),
            "user": user,
            "deployments": rows,
            "error": error,
        }
        self._send(message)
        return True
