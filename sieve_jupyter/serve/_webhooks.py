"""Webhooks, as Cog sends them: the prediction's whole state, POSTed to the caller's URL on
``start``, ``output``, ``logs`` and ``completed`` (the ones the request's filter keeps);
``output`` and ``logs`` at most every 500 ms, ``completed`` always last and retried a few
times."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sieve_jupyter.serve._predictions import Prediction

__all__ = ["WebhookSender"]

_log = logging.getLogger(__name__)
_THROTTLE = 0.5
_RETRIES = (0.1, 0.5, 2.0)


class WebhookSender:
    """Delivers one prediction's webhook calls in order, on the server's event loop."""

    def __init__(self, client: Any, prediction: Prediction, headers: dict[str, str]) -> None:
        self.client = client
        self.prediction = prediction
        self.headers = headers
        self._last_sent = 0.0
        self._pending: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def wants(self, event: str) -> bool:
        return event in self.prediction.webhook_events

    async def send(self, event: str, body: dict[str, Any] | None = None) -> None:
        """Send `event` now (start, completed) or within the throttle (output, logs), with
        `body` (the state when the event happened) or the state at sending time."""
        if not self.wants(event):
            return
        loop = asyncio.get_running_loop()
        if event in ("output", "logs"):
            if self._pending is not None:
                return  # a send is already scheduled; it carries the newest state
            wait = self._last_sent + _THROTTLE - loop.time()
            if wait > 0:
                self._pending = loop.create_task(self._later(wait))
                return
        elif self._pending is not None:
            self._pending.cancel()
            self._pending = None
        await self._post(retry=event == "completed", body=body)

    async def _later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._pending = None
        await self._post(retry=False)

    async def _post(self, *, retry: bool, body: dict[str, Any] | None = None) -> None:
        assert self.prediction.webhook is not None
        async with self._lock:
            self._last_sent = asyncio.get_running_loop().time()
            if body is None:
                body = self.prediction.envelope()
            for delay in (*_RETRIES, None) if retry else (None,):
                try:
                    response = await self.client.post(
                        self.prediction.webhook, json=body, headers=self.headers
                    )
                    if response.status_code < 500:
                        return
                except Exception as exc:  # noqa: BLE001 - the receiver's problem, logged
                    _log.warning("webhook %s failed: %s", self.prediction.webhook, exc)
                if delay is None:
                    return
                await asyncio.sleep(delay)
