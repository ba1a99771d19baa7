"""The hub's mailboxes (`_ray_hub.SieveHub`), driven on an event loop of their own: a stopped
worker still takes the word to leave that was left for it, and its mailbox goes after."""

from __future__ import annotations

import asyncio

from sieve_jupyter.backends._ray_hub import SieveHub


def test_a_worker_forgotten_with_mail_waiting_still_takes_it() -> None:
    async def scenario() -> None:
        hub = SieveHub()
        waiting = asyncio.create_task(hub.take("w1", timeout=5))
        await asyncio.sleep(0)  # (the worker is waiting for mail)
        await hub.post("w1", "shutdown")
        await hub.forget("w1")  # the kernel forgets it before it took the word
        assert await waiting == ["shutdown"]
        assert "w1" not in hub._to_workers and "w1" not in hub._worker_news
        assert not hub._leaving

    asyncio.run(scenario())


def test_a_worker_forgotten_with_an_empty_mailbox_is_dropped_at_once() -> None:
    async def scenario() -> None:
        hub = SieveHub()
        await hub.post("w1", "cancel")
        assert await hub.take("w1", timeout=5) == ["cancel"]
        await hub.forget("w1")
        assert "w1" not in hub._to_workers and "w1" not in hub._worker_news
        assert not hub._leaving
        assert await hub.take("w2", timeout=0.01) == []  # (others are not touched)

    asyncio.run(scenario())
