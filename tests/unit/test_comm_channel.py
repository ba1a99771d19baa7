"""The kernel side of the panel's comm, driven with a recording comm and an in-process manager.

The manager double uses the real `EventBus`; what is checked is what a panel would receive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from sieve_jupyter.jupyter import _channel_protocol as protocol
from sieve_jupyter.jupyter import comm as panel_comm
from sieve_jupyter.jupyter._channel import PanelChannel
from sieve_jupyter.manager import EventBus

T0 = 1_700_000_000.0


class RecordingComm:
    """Stands in for an ipykernel comm: records what the kernel sends, lets tests reply."""

    def __init__(self, target_name: str = "", data: Any = None) -> None:
        self.target_name = target_name
        self.open_data = data
        self.sent: list[dict[str, Any]] = []
        self.closed = False
        self._on_msg: Callable[[dict[str, Any]], None] | None = None
        self._on_close: Callable[[dict[str, Any]], None] | None = None
        self._lock = threading.Lock()

    def send(self, data: Any = None) -> None:
        with self._lock:
            self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    def on_msg(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._on_msg = callback

    def on_close(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._on_close = callback

    # what the panel does
    def panel_sends(self, data: dict[str, Any]) -> None:
        assert self._on_msg is not None
        self._on_msg({"content": {"data": data}})

    def panel_closes(self) -> None:
        assert self._on_close is not None
        self._on_close({"content": {"data": {}}})

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.sent if m["type"] == kind]


class Job:
    def __init__(self, job_id: str, submitted_at: float, status: str = "queued") -> None:
        self.job_id = job_id
        self.submitted_at = submitted_at
        self.status = status
        self.error: BaseException | None = None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self.error

    def snapshot(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "function": "echo",
            "status": self.status,
            "submitted_at": self.submitted_at,
            "started_at": None,
            "finished_at": None,
            "duration": None,
            "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}",
            "progress": [0.5, "half"] if self.status == "processing" else None,
            "worker": None,
        }

    def cancel(self) -> bool:
        self.status = "cancelled"
        return True


class Manager:
    """The manager API the channel consumes, in-process (no workers)."""

    def __init__(self) -> None:
        self.events = EventBus()
        self.function_rows: dict[str, dict[str, Any]] = {}
        self.all_jobs: dict[str, Job] = {}
        self.restarted: list[str] = []
        self.stopped: list[str] = []

    def define(self, name: str, state: str = "warm") -> None:
        row = {
            "name": name,
            "kind": "model",
            "backend": "local",
            "state": state,
            "workers": [{"id": "w1", "state": state, "setup_seconds": 1.0, "setup_at": T0}],
            "spec_hash": "abc",
            "size": 1,
            "queued": 0,
            "error": None,
        }
        self.function_rows[name] = row
        self.events.emit("function", row)

    def remove(self, name: str) -> None:
        del self.function_rows[name]
        self.events.emit("function_removed", {"name": name})

    def push(self, job_id: str, submitted_at: float) -> Job:
        job = self.all_jobs[job_id] = Job(job_id, submitted_at)
        self.events.emit("job", job.snapshot())
        return job

    def set_status(self, job: Job, status: str) -> None:
        job.status = status
        self.events.emit("job", job.snapshot())

    def functions(self) -> list[dict[str, Any]]:
        return list(self.function_rows.values())

    def jobs(self, limit: int | None = None) -> list[Job]:
        newest = sorted(self.all_jobs.values(), key=lambda j: j.submitted_at, reverse=True)
        return newest[:limit] if limit is not None else newest

    def job(self, job_id: str) -> Job:
        try:
            return self.all_jobs[job_id]
        except KeyError:
            raise LookupError(f"no job {job_id!r} in this kernel") from None

    def restart(self, name: str) -> None:
        self.restarted.append(name)

    def stop(self, name: str) -> None:
        if name not in self.function_rows:
            raise LookupError(f"no function {name!r}")
        self.stopped.append(name)


def subscribe(job_limit: int = protocol.DEFAULT_JOB_LIMIT) -> dict[str, Any]:
    return {"v": protocol.PROTOCOL_VERSION, "type": "subscribe", "job_limit": job_limit}


def action(name: str, target: str, request_id: str = "r1") -> dict[str, Any]:
    return {
        "v": protocol.PROTOCOL_VERSION,
        "type": "action",
        "request_id": request_id,
        "action": name,
        "target": target,
    }


def open_channel(
    manager: Manager, *, interval: float | None = None, job_limit: int = 50
) -> tuple[PanelChannel, RecordingComm]:
    comm = RecordingComm()
    channel = PanelChannel(
        comm, lambda: manager, interval=interval, threaded_actions=False, clock=lambda: T0 + 9
    )
    channel.start(subscribe(job_limit))
    return channel, comm


def fields(message: dict[str, Any], kind: str) -> None:
    assert sorted(message) == protocol.PROTOCOL["kernelMessages"][kind]


def test_subscribing_sends_a_snapshot_of_functions_and_newest_jobs() -> None:
    manager = Manager()
    manager.define("echo")
    for i in range(5):
        manager.push(f"job-{i}", T0 + i)
    _, comm = open_channel(manager, job_limit=3)
    (snapshot,) = comm.sent
    fields(snapshot, "snapshot")
    assert snapshot["type"] == "snapshot"
    assert snapshot["server_time"] == T0 + 9
    assert [f["name"] for f in snapshot["functions"]] == ["echo"]
    assert sorted(snapshot["functions"][0]) == protocol.PROTOCOL["records"]["function"]
    assert [j["job_id"] for j in snapshot["jobs"]] == ["job-4", "job-3", "job-2"]
    assert sorted(snapshot["jobs"][0]) == protocol.PROTOCOL["records"]["job"]
    assert snapshot["job_limit"] == 3
    assert snapshot["counts"] == {
        "echo": {"queued": 5, "processing": 0, "finished": 0, "error": 0, "cancelled": 0}
    }
    assert sorted(snapshot["counts"]["echo"]) == protocol.PROTOCOL["records"]["counts"]


def test_running_jobs_are_always_listed_beyond_the_newest() -> None:
    manager = Manager()
    old = manager.push("old", T0)
    manager.set_status(old, "processing")
    for i in range(5):
        manager.push(f"job-{i}", T0 + 1 + i)
    channel, comm = open_channel(manager, job_limit=2)
    (snapshot,) = comm.sent
    assert [j["job_id"] for j in snapshot["jobs"]] == ["job-4", "job-3", "old"]

    for i in range(5):
        manager.push(f"new-{i}", T0 + 10 + i)
    manager.set_status(old, "processing")  # e.g. it reported progress
    channel.flush()
    (delta,) = comm.of_type("delta")
    assert [j["job_id"] for j in delta["jobs"]] == ["new-4", "new-3", "old"]

    # once it stops, the panel hears it however many newer jobs came meanwhile
    for i in range(5):
        manager.push(f"newer-{i}", T0 + 20 + i)
    manager.set_status(old, "cancelled")
    channel.flush()
    last = comm.of_type("delta")[-1]
    assert [(j["job_id"], j["status"]) for j in last["jobs"]] == [
        ("newer-4", "queued"),
        ("newer-3", "queued"),
        ("old", "cancelled"),
    ]
    manager.set_status(old, "cancelled")  # told once: not carried again
    manager.push("newest", T0 + 30)
    for i in range(3):
        manager.push(f"late-{i}", T0 + 31 + i)
    channel.flush()
    assert "old" not in [j["job_id"] for j in comm.of_type("delta")[-1]["jobs"]]


def test_job_counts_follow_every_status_change_once() -> None:
    manager = Manager()
    done = manager.push("done", T0)
    manager.set_status(done, "finished")
    channel, comm = open_channel(manager)
    jobs = [manager.push(f"job-{i}", T0 + i) for i in range(4)]
    manager.set_status(jobs[0], "processing")
    manager.set_status(jobs[0], "processing")  # a progress report: no move
    manager.set_status(jobs[1], "processing")
    manager.set_status(jobs[1], "error")
    manager.set_status(jobs[2], "cancelled")
    manager.set_status(jobs[2], "cancelled")  # the panel's own refresh after a cancel
    channel.flush()
    assert channel.flush() is False
    (delta,) = comm.of_type("delta")
    assert delta["counts"] == {
        "echo": {"queued": 1, "processing": 1, "finished": 1, "error": 1, "cancelled": 1}
    }
    manager.set_status(jobs[0], "finished")
    channel.flush()
    assert comm.of_type("delta")[-1]["counts"]["echo"]["finished"] == 2


def test_a_failed_job_carries_its_worker_frames_for_the_tooltip() -> None:
    from sieve_jupyter._errors import RemoteTraceback

    manager = Manager()
    channel, comm = open_channel(manager)
    job = manager.push("bad", T0)
    error = ValueError("odd input 13")
    cause = RemoteTraceback("Traceback ...")
    cause.frames = [("/home/me/resize.py", 7, "resize", "raise ValueError(i)")]  # type: ignore[attr-defined]
    error.__cause__ = cause
    job.error = error
    manager.set_status(job, "error")
    channel.flush()
    (delta,) = comm.of_type("delta")
    assert delta["jobs"][0]["error"] == (
        "File /home/me/resize.py:7, in resize\n    raise ValueError(i)\nValueError: odd input 13"
    )


def test_a_burst_of_job_events_becomes_one_delta_with_the_latest_state() -> None:
    manager = Manager()
    channel, comm = open_channel(manager)
    jobs = [manager.push(f"job-{i}", T0 + i) for i in range(10)]
    for _ in range(100):
        for job in jobs:
            manager.set_status(job, "processing")
    manager.set_status(jobs[3], "finished")
    manager.define("echo", state="starting")

    assert channel.flush() is True
    assert channel.flush() is False  # nothing changed since
    (delta,) = comm.of_type("delta")
    fields(delta, "delta")
    assert delta["seq"] == comm.sent[0]["seq"] + 1
    statuses = {j["job_id"]: j["status"] for j in delta["jobs"]}
    assert len(statuses) == 10
    assert statuses["job-3"] == "finished"
    assert statuses["job-4"] == "processing"
    assert delta["jobs"][0]["progress"] == {"fraction": 0.5, "message": "half"}
    assert [f["state"] for f in delta["functions"]] == ["starting"]


def test_deltas_count_up_and_carry_removals() -> None:
    manager = Manager()
    manager.define("echo")
    channel, comm = open_channel(manager)
    manager.remove("echo")
    channel.flush()
    manager.define("other")
    channel.flush()
    seqs = [m["seq"] for m in comm.sent]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    first, second = comm.of_type("delta")
    assert first["removed_functions"] == ["echo"]
    assert [f["name"] for f in second["functions"]] == ["other"]


def test_a_delta_holds_at_most_the_newest_jobs_the_panel_lists() -> None:
    manager = Manager()
    channel, comm = open_channel(manager, job_limit=4)
    for i in range(20):
        manager.push(f"job-{i:02d}", T0 + i)
    channel.flush()
    (delta,) = comm.of_type("delta")
    assert [j["job_id"] for j in delta["jobs"]] == ["job-19", "job-18", "job-17", "job-16"]


def test_subscribing_again_sends_a_fresh_snapshot_and_drops_stale_changes() -> None:
    manager = Manager()
    channel, comm = open_channel(manager)
    manager.push("a", T0)
    comm.panel_sends(subscribe())
    assert channel.flush() is False
    first, second = comm.of_type("snapshot")
    assert second["seq"] > first["seq"]
    assert [j["job_id"] for j in second["jobs"]] == ["a"]


def test_cancel_restart_and_stop_reach_the_manager_and_are_answered() -> None:
    manager = Manager()
    manager.define("echo")
    job = manager.push("a", T0)
    channel, comm = open_channel(manager)
    comm.panel_sends(action("cancel_job", "a", "r1"))
    comm.panel_sends(action("restart", "echo", "r2"))
    comm.panel_sends(action("stop", "echo", "r3"))
    assert job.status == "cancelled"
    assert manager.restarted == ["echo"]
    assert manager.stopped == ["echo"]
    results = comm.of_type("result")
    for result in results:
        fields(result, "result")
    # the panel sees the cancelled job even from a manager that publishes nothing for it
    channel.flush()
    (delta,) = comm.of_type("delta")
    assert [(j["job_id"], j["status"]) for j in delta["jobs"]] == [("a", "cancelled")]
    assert [(r["request_id"], r["ok"]) for r in results] == [
        ("r1", True),
        ("r2", True),
        ("r3", True),
    ]


def test_a_failed_action_tells_the_panel_why() -> None:
    manager = Manager()
    _, comm = open_channel(manager)
    comm.panel_sends(action("cancel_job", "nope", "r1"))
    comm.panel_sends(action("explode", "echo", "r2"))
    first, second = comm.of_type("result")
    assert first["ok"] is False and "nope" in first["error"]
    assert second["ok"] is False and "explode" in second["error"]


def test_messages_of_another_version_are_ignored() -> None:
    manager = Manager()
    _, comm = open_channel(manager)
    comm.panel_sends({**subscribe(), "v": protocol.PROTOCOL_VERSION + 1})
    comm.panel_sends({"v": protocol.PROTOCOL_VERSION, "type": "surprise"})
    assert len(comm.sent) == 1


def test_when_the_panel_closes_the_channel_stops_listening() -> None:
    manager = Manager()
    channel, comm = open_channel(manager)
    assert manager.events  # subscribed
    comm.panel_closes()
    assert channel.closed
    assert not manager.events
    manager.push("late", T0)
    assert channel.flush() is False
    assert comm.closed is False  # the panel closed it; the kernel does not close it again


def test_the_flusher_thread_delivers_changes_on_its_own() -> None:
    manager = Manager()
    channel, comm = open_channel(manager, interval=0.01)
    try:
        job = manager.push("a", T0)
        manager.set_status(job, "finished")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = [j["status"] for d in comm.of_type("delta") for j in d["jobs"]]
            if seen and seen[-1] == "finished":
                break
            time.sleep(0.01)
        seen = [j["status"] for d in comm.of_type("delta") for j in d["jobs"]]
        assert seen[-1] == "finished"
    finally:
        channel.close()
    assert comm.closed


# -- registration on a kernel ----------------------------------------------------------------


class CommManager:
    def __init__(self) -> None:
        self.targets: dict[str, Callable[[Any, dict[str, Any]], None]] = {}

    def register_target(self, name: str, handler: Callable[[Any, dict[str, Any]], None]) -> None:
        self.targets[name] = handler

    def unregister_target(self, name: str, handler: Callable[[Any, dict[str, Any]], None]) -> None:
        self.targets.pop(name)


class Session:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, socket: Any, msg_type: str, content: dict[str, Any], **_: Any) -> None:
        self.sent.append((msg_type, content))


class Kernel:
    iopub_socket = object()

    def __init__(self) -> None:
        self.session = Session()

    def get_parent(self, channel: str = "shell") -> dict[str, Any]:
        return {}


class IPython:
    kernel = Kernel()


@pytest.fixture
def kernel_comms(monkeypatch: pytest.MonkeyPatch) -> tuple[CommManager, list[RecordingComm]]:
    import comm as comm_package

    manager = Manager()
    comm_manager = CommManager()
    opened: list[RecordingComm] = []

    def create_comm(target_name: str = "", data: Any = None, **_: Any) -> RecordingComm:
        created = RecordingComm(target_name, data)
        opened.append(created)
        return created

    monkeypatch.setattr(comm_package, "get_comm_manager", lambda: comm_manager)
    monkeypatch.setattr(comm_package, "create_comm", create_comm)
    monkeypatch.setattr(panel_comm, "_get_manager", lambda: manager)
    monkeypatch.setattr(panel_comm, "_registered_manager", None)
    yield comm_manager, opened
    panel_comm.unregister(IPython())


def test_register_lets_a_panel_open_the_comm_and_announces_it_without_opening_one(
    kernel_comms: tuple[CommManager, list[RecordingComm]],
) -> None:
    comm_manager, opened = kernel_comms
    IPython.kernel.session.sent.clear()
    panel_comm.register(IPython())
    panel_comm.register(IPython())  # a second %load_ext or the lazy hook: no second beacon
    assert set(comm_manager.targets) == {protocol.COMM_TARGET}
    assert opened == []  # the kernel never opens a comm itself
    ((msg_type, content),) = IPython.kernel.session.sent
    assert msg_type == "update_display_data"
    assert content["transient"] == {"display_id": protocol.BEACON_DISPLAY_ID}
    assert content["data"] == {
        protocol.BEACON_MIME: {"v": protocol.PROTOCOL_VERSION, "type": "hello"}
    }

    from_panel = RecordingComm()
    comm_manager.targets[protocol.COMM_TARGET](from_panel, {"content": {"data": subscribe()}})
    assert [m["type"] for m in from_panel.sent] == ["snapshot"]
    assert len(panel_comm.channels()) == 1


def test_unregister_closes_every_channel_and_removes_the_target(
    kernel_comms: tuple[CommManager, list[RecordingComm]],
) -> None:
    comm_manager, _ = kernel_comms
    panel_comm.register(IPython())
    from_panel = RecordingComm()
    comm_manager.targets[protocol.COMM_TARGET](from_panel, {"content": {"data": subscribe()}})
    panel_comm.unregister(IPython())
    assert comm_manager.targets == {}
    assert from_panel.closed
    assert panel_comm.channels() == []


def test_register_outside_a_kernel_does_nothing(
    kernel_comms: tuple[CommManager, list[RecordingComm]],
) -> None:
    comm_manager, opened = kernel_comms

    class TerminalIPython:
        pass

    panel_comm.register(TerminalIPython())
    assert comm_manager.targets == {} and opened == []


def test_comms_left_behind_by_reloaded_pages_are_closed_after_a_while(
    kernel_comms: tuple[CommManager, list[RecordingComm]],
) -> None:
    comm_manager, opened = kernel_comms
    panel_comm.register(IPython())
    pages = [RecordingComm() for _ in range(panel_comm.MAX_CHANNELS + 2)]
    for page in pages:
        comm_manager.targets[protocol.COMM_TARGET](page, {"content": {"data": subscribe()}})
    assert len(panel_comm.channels()) == panel_comm.MAX_CHANNELS
    assert pages[0].closed and pages[1].closed
    assert not pages[2].closed and not pages[-1].closed
