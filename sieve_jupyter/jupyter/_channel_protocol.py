"""The messages between a kernel and the JupyterLab "Sieve" panel, defined once for Python.

The TypeScript twin lives in ``labextension/src/protocol.ts``; ``tests/unit/test_comm_protocol.py``
compares `PROTOCOL` (derived from the TypedDicts below) with the spec block in that file, so a
field added on one side and forgotten on the other fails the tests.

Flow: the panel opens the comm (the kernel never does; its beacon on IOPub tells a panel that
the target now exists) and sends ``subscribe`` (as the comm's open data, or later on an open
comm); the kernel answers with a ``snapshot`` and then ``delta`` messages whose ``seq`` counts
up by one. A panel that sees a gap subscribes again. ``action`` requests get a ``result`` with
the same ``request_id``.

Deployments (``sieve.deployments()``: they outlive the kernel) are not the kernel's state, so
they do not travel in snapshots and deltas: while the panel says its Deployments section is
visible (``watch_deployments`` in ``subscribe``, then ``watch``), the kernel lists them with
their health every `DEPLOYMENTS_INTERVAL` on a thread of its own and sends a whole
``deployments`` message when the list changed (unsequenced: each one replaces the last).
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

DEPLOYMENTS_INTERVAL = 5.0
"""Seconds between two listings of the deployments while the panel shows them: each asks
every deployment's health check over HTTP, so it is polled slowly, and only while watched."""

FunctionState = Literal["idle", "starting", "warm", "error", "stopped"]
JobStatus = Literal["queued", "processing", "finished", "error", "cancelled"]
ActionName = Literal["cancel_job", "restart", "stop", "undeploy"]

FUNCTION_STATES: tuple[str, ...] = ("idle", "starting", "warm", "error", "stopped")
JOB_STATUSES: tuple[str, ...] = ("queued", "processing", "finished", "error", "cancelled")
ACTIONS: tuple[str, ...] = ("cancel_job", "restart", "stop", "undeploy")


class WorkerRow(TypedDict):
    """One worker of a function, as the panel shows it."""

    id: str
    state: str
    setup_seconds: float | None
    setup_at: float | None
    description: str
    node: str | None
    """Where the worker runs when that is another machine (a Ray worker's node address)."""


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
    deployments: bool
    """The kernel can list deployments (the deployment layer is installed and hooked in)."""


class DeploymentRow(TypedDict):
    """One running version of a deployment of this kernel's user (``Deployment.describe()``
    without what the panel must not see: never a token)."""

    name: str
    version: str
    backend: str
    url: str
    state: str
    health: str | None
    draining: bool
    workers: int
    ready_workers: int | None
    started_at: float | None
    error: str | None


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


class DeploymentsMessage(TypedDict):
    """kernel -> panel: every deployment of the kernel's user with its health, when the list
    changed (and right after the panel starts watching); `error` says why it could not be
    listed (the rows are then empty)."""

    v: int
    type: Literal["deployments"]
    server_time: float
    user: str
    deployments: list[DeploymentRow]
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
    watch_deployments: bool


class WatchMessage(TypedDict):
    """panel -> kernel: the Deployments section was shown or hidden (list them, or stop)."""

    v: int
    type: Literal["watch"]
    deployments: bool


class ActionMessage(TypedDict):
    """panel -> kernel: cancel a job (target = job id), restart or stop a function (= name),
    undeploy a deployment (= ``user/name``)."""

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
    "deployments": DeploymentsMessage,
}
PANEL_MESSAGES: dict[str, type[Any]] = {
    "subscribe": SubscribeMessage,
    "action": ActionMessage,
    "watch": WatchMessage,
}
RECORDS: dict[str, type[Any]] = {
    "worker": WorkerRow,
    "function": FunctionRow,
    "progress": Progress,
    "job": JobRow,
    "counts": JobCounts,
    "features": Features,
    "deployment": DeploymentRow,
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
