"""The kernel side of the panel's Deployments section, with a lister standing in for the
deployment layer: it lists only while watched, sends only what changed, never a token, and
undeploy's errors come back as results. (The real deployment layer over a real kernel's comm:
tests/kernel/test_panel_deployments_kernel.py.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sieve_jupyter import _hooks
from sieve_jupyter._errors import FunctionNotFoundError
from sieve_jupyter.jupyter._channel import PanelChannel
from sieve_jupyter.jupyter._channel_protocol import PROTOCOL_VERSION

V = PROTOCOL_VERSION


class Lister:
    """Counts its listings and signals each one."""

    def __init__(self) -> None:
        self.listings = 0
        self.listed = threading.Semaphore(0)
        self.deployments: list[dict[str, Any]] = [
            {
                "name": "alice/adder",
                "version": "1-abc",
                "backend": "local",
                "url": "http://127.0.0.1:40001",
                "state": "serving",
                "health": "READY",
                "workers": 2,
                "ready_workers": 2,
                "functions": ["adder"],
                "started_at": 1.0,
                "token": "the-secret-token-value",  # (describe() never has it: belt and braces)
                "pid": 42,
            }
        ]
        self.undeployed: list[str] = []

    def user(self) -> str:
        return "alice"

    def rows(self) -> list[dict[str, Any]]:
        self.listings += 1
        self.listed.release()
        return [dict(d) for d in self.deployments]

    def undeploy(self, name: str) -> None:
        if name not in {d["name"] for d in self.deployments}:
            raise FunctionNotFoundError(f"no deployment {name} is running")
        self.undeployed.append(name)
        self.deployments = [d for d in self.deployments if d["name"] != name]


class Manager:
    """Enough of a manager for a channel that never lists functions here."""

    class _Events:
        def subscribe(self, callback: Any) -> Any:
            return lambda: None

    events = _Events()

    def functions(self) -> list[dict[str, Any]]:
        return []

    def jobs(self, limit: int | None = None) -> list[Any]:
        return []


class Comm:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.arrived = threading.Semaphore(0)

    def send(self, data: Any = None) -> None:
        self.sent.append(data)
        if data["type"] == "deployments":
            self.arrived.release()

    def close(self) -> None:
        pass

    def on_msg(self, callback: Any) -> None:
        pass

    def on_close(self, callback: Any) -> None:
        pass

    def deployments(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == "deployments"]


@pytest.fixture
def lister(monkeypatch: pytest.MonkeyPatch) -> Lister:
    found = Lister()
    monkeypatch.setattr(_hooks, "deployment_listers", [found])
    return found


@pytest.fixture
def channel(lister: Lister) -> Iterator[tuple[PanelChannel, Comm]]:
    comm = Comm()
    channel = PanelChannel(
        comm, lambda: Manager(), interval=None, threaded_actions=False, deployments_interval=3600
    )  # type: ignore[arg-type]
    channel.start()
    yield channel, comm
    channel.close()


def _next(semaphore: threading.Semaphore) -> None:
    assert semaphore.acquire(timeout=30), "nothing came"


def test_deployments_are_listed_only_while_the_panel_watches(
    channel: tuple[PanelChannel, Comm], lister: Lister
) -> None:
    panel, comm = channel
    panel.handle({"v": V, "type": "subscribe", "job_limit": 5})  # not watching
    (snapshot,) = [m for m in comm.sent if m["type"] == "snapshot"]
    assert snapshot["features"]["deployments"] is True
    assert lister.listings == 0

    panel.handle({"v": V, "type": "watch", "deployments": True})
    _next(comm.arrived)
    (message,) = comm.deployments()
    assert message["user"] == "alice" and message["error"] is None
    assert message["deployments"] == [
        {
            "name": "alice/adder",
            "version": "1-abc",
            "backend": "local",
            "url": "http://127.0.0.1:40001",
            "state": "serving",
            "health": "READY",
            "draining": False,
            "workers": 2,
            "ready_workers": 2,
            "started_at": 1.0,
            "error": None,
        }
    ]
    assert "the-secret-token-value" not in repr(comm.sent)

    # Shown again: the list is sent at once even though nothing changed (the panel asked).
    panel.handle({"v": V, "type": "watch", "deployments": False})
    panel.handle({"v": V, "type": "watch", "deployments": True})
    _next(comm.arrived)
    assert len(comm.deployments()) == 2
    assert comm.deployments()[1]["deployments"] == message["deployments"]


def test_an_unchanged_list_is_not_sent_again(
    channel: tuple[PanelChannel, Comm], lister: Lister
) -> None:
    panel, comm = channel
    panel.deployments.watch(True)
    _next(comm.arrived)
    assert panel.deployments.list_once() is False  # the same rows: nothing sent
    lister.deployments[0]["health"] = "UNREACHABLE"
    assert panel.deployments.list_once() is True
    row = comm.deployments()[-1]["deployments"][0]
    assert row["health"] == "UNREACHABLE"
    assert row["error"] == "UNREACHABLE: its server does not answer at http://127.0.0.1:40001"


def test_undeploy_is_an_action_whose_errors_are_results(
    channel: tuple[PanelChannel, Comm], lister: Lister
) -> None:
    panel, comm = channel
    panel.handle({"v": V, "type": "subscribe", "job_limit": 5, "watch_deployments": True})
    _next(comm.arrived)
    panel.handle(
        {
            "v": V,
            "type": "action",
            "request_id": "r1",
            "action": "undeploy",
            "target": "alice/adder",
        }
    )
    _next(comm.arrived)  # refreshed at once
    assert lister.undeployed == ["alice/adder"]
    assert comm.deployments()[-1]["deployments"] == []
    panel.handle(
        {
            "v": V,
            "type": "action",
            "request_id": "r2",
            "action": "undeploy",
            "target": "alice/adder",
        }
    )
    results = {m["request_id"]: m for m in comm.sent if m["type"] == "result"}
    assert results["r1"]["ok"] is True
    assert results["r2"]["ok"] is False
    assert results["r2"]["error"] == (
        "undeploy alice/adder: FunctionNotFoundError: no deployment alice/adder is running"
    )


def test_a_listing_that_fails_says_why_in_the_section(
    channel: tuple[PanelChannel, Comm], lister: Lister, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel, comm = channel

    def broken() -> list[dict[str, Any]]:
        raise OSError("the registry folder is not readable")

    monkeypatch.setattr(lister, "rows", broken)
    panel.deployments.watch(True)
    _next(comm.arrived)
    message = comm.deployments()[-1]
    assert message["deployments"] == []
    assert message["error"] == (
        "the deployments could not be listed: OSError: the registry folder is not readable"
    )


def test_without_a_deployment_layer_the_panel_has_no_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_hooks, "deployment_listers", [])
    comm = Comm()
    panel = PanelChannel(comm, lambda: Manager(), interval=None)  # type: ignore[arg-type]
    panel.handle({"v": V, "type": "subscribe", "job_limit": 5, "watch_deployments": True})
    assert comm.sent[0]["features"]["deployments"] is False
    assert comm.deployments() == []
    panel.close()


def test_a_ray_worker_row_keeps_its_node_and_nothing_else_of_the_backend() -> None:
    from sieve_jupyter.jupyter._channel_rows import function_row

    # what a pool of linked (Ray) workers publishes: LinkedWorker.describe() with its link's
    # details, beside a connected worker that runs here
    row = function_row(
        {
            "name": "resize",
            "backend": "ray",
            "state": "warm",
            "workers": [
                {
                    "id": "resize-1",
                    "state": "ready",
                    "description": "actor 0a1b2c3d on 10.0.0.2",
                    "node": "10.0.0.2",
                    "node_id": "f" * 56,
                    "actor_id": "0a1b2c3d" * 4,
                    "pid": 123,
                },
                {"id": "resize-2", "state": "ready", "description": "pid 7", "pid": 7},
            ],
        }
    )
    assert [(w["id"], w["node"]) for w in row["workers"]] == [
        ("resize-1", "10.0.0.2"),
        ("resize-2", None),
    ]
    assert set(row["workers"][0]) == {
        "id",
        "state",
        "setup_seconds",
        "setup_at",
        "description",
        "node",
    }
