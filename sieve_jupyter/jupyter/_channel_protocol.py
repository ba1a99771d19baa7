"""The messages between a kernel and the JupyterLab "Sieve" panel, defined once for Python.

The TypeScript twin lives in ``labextension/src/protocol.ts``; ``tests/unit/test_comm_protocol.py``
compares `PROTOCOL` (derived from the TypedDicts below) with the spec block in that file, so a
field added on one side and forgotten on the other fails the tests.

Flow: the panel opens the comm (the kernel never does; its beacon on IOPub tells a panel that
the target now exists) and sends ``subscribe`` (as the comm's open data, or later on an open
comm); the kernel answers with a ``snapshot`` and then ``delta`` messages whose ``seq`` counts
up by one. A panel that sees a gap subscribes again. ``action`` requests get a ``result`` with
the same ``request_id``.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

PROTOCOL_VERSION = 1
"""Bumped on any incompatible change; each side ignores messages of another version."""

COMM_TARGET = "sieve_jupyter.panel"
"""The comm target name, registered by the kernel; only the panel opens comms to it."""

BEACON_DISPLAY_ID = "sieve_jupyter.panel"
"""The display id of the kernel's beacon: an ``update_display_data`` no output ever shows,
published when the kernel registers `COMM_TARGET`, so a panel showing this kernel connects."""

BEACON_MIME = "application/vnd.sieve-jupyter.hello+json"
"""The beacon's one MIME type; its data is a `HelloMessage`."""

DEFAULT_JOB_LIMIT = 50
"""How many jobs, newest first, the panel shows unless it asks for another bound (the panel's
``jobLimit`` setting; running jobs are always listed on top of these)."""

MAX_JOB_LIMIT = 500

FLUSH_INTERVAL = 0.25
"""Seconds between two deltas at most: a few updates a second however many jobs run."""

FunctionState = Literal["idle", "starting", "warm", "error", "stopped"]
JobStatus = Literal["queued", "processing", "finished", "error", "cancelled"]
ActionName = Literal["cancel_job", "restart", "stop"]

FUNCTION_STATES: tuple[str, ...] = ("idle", "starting", "warm", "error", "stopped")
JOB_STATUSES: tuple[str, ...] = ("queued", "processing", "finished", "error", "cancelled")
ACTIONS: tuple[str, ...] = ("cancel_job", "restart", "stop")


class WorkerRow(TypedDict):
    """One worker of a function, as the panel shows it."""

    id: str
    state: str
    setup_seconds: float | None
    setup_at: float | None
    description: str


class FunctionRow(TypedDict):
    """A registered function or model."""

    name: str
    kind: str
    backend: str
    state: str
    workers: list[WorkerRow]
    spec_hash: str
    error: str | None


class Progress(TypedDict):
    """The last progress a job reported."""

    fraction: float | None
    message: str


class JobRow(TypedDict):
    """A job, as the panel lists it. Times are the kernel's epoch seconds."""

    job_id: str
    function: str
    status: str
    submitted_at: float | None
    started_at: float | None
    finished_at: float | None
    duration: float | None
    error: str | None
    progress: Progress | None


class JobCounts(TypedDict):
    """How many of a function's jobs stand in each status (the jobs this kernel remembers)."""

    queued: int
    processing: int
    finished: int
    error: int
    cancelled: int


class Features(TypedDict):
    """What the kernel offers beyond the basics, so the panel can hide what would not work."""

    form: bool


class SnapshotMessage(TypedDict):
    """kernel -> panel: the whole state, after every ``subscribe``: the newest `job_limit` jobs
    plus every running one, and the job counts of every function."""

    v: int
    type: Literal["snapshot"]
    seq: int
    server_time: float
    functions: list[FunctionRow]
    jobs: list[JobRow]
    counts: dict[str, JobCounts]
    job_limit: int
    features: Features


class DeltaMessage(TypedDict):
    """kernel -> panel: what changed since the previous message (upserts and removals; `counts`
    holds the functions whose counts moved)."""

    v: int
    type: Literal["delta"]
    seq: int
    server_time: float
    functions: list[FunctionRow]
    removed_functions: list[str]
    jobs: list[JobRow]
    counts: dict[str, JobCounts]


class ResultMessage(TypedDict):
    """kernel -> panel: the outcome of one ``action``."""

    v: int
    type: Literal["result"]
    request_id: str
    ok: bool
    error: str | None


class HelloMessage(TypedDict):
    """kernel -> panel: the beacon's data (on IOPub, not on the comm), sent when the kernel
    registers the comm target."""

    v: int
    type: Literal["hello"]


class SubscribeMessage(TypedDict):
    """panel -> kernel: start (or restart) the stream with a fresh snapshot."""

    v: int
    type: Literal["subscribe"]
    job_limit: int


class ActionMessage(TypedDict):
    """panel -> kernel: cancel a job (target = job id), restart or stop a function (= name)."""

    v: int
    type: Literal["action"]
    request_id: str
    action: ActionName
    target: str


KERNEL_MESSAGES: dict[str, type[Any]] = {
    "hello": HelloMessage,
    "snapshot": SnapshotMessage,
    "delta": DeltaMessage,
    "result": ResultMessage,
}
PANEL_MESSAGES: dict[str, type[Any]] = {
    "subscribe": SubscribeMessage,
    "action": ActionMessage,
}
RECORDS: dict[str, type[Any]] = {
    "worker": WorkerRow,
    "function": FunctionRow,
    "progress": Progress,
    "job": JobRow,
    "counts": JobCounts,
    "features": Features,
}


def _fields(typed_dict: type[Any]) -> list[str]:
    return sorted(typed_dict.__annotations__)


PROTOCOL: dict[str, Any] = {
    "version": PROTOCOL_VERSION,
    "target": COMM_TARGET,
    "beacon": {"displayId": BEACON_DISPLAY_ID, "mime": BEACON_MIME},
    "kernelMessages": {name: _fields(td) for name, td in sorted(KERNEL_MESSAGES.items())},
    "panelMessages": {name: _fields(td) for name, td in sorted(PANEL_MESSAGES.items())},
    "records": {name: _fields(td) for name, td in sorted(RECORDS.items())},
    "functionStates": list(FUNCTION_STATES),
    "jobStatuses": list(JOB_STATUSES),
    "actions": list(ACTIONS),
}
"""The language-neutral summary that must equal the spec block of ``protocol.ts``."""
