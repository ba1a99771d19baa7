"""The worker protocol's vocabulary: every message the kernel and a worker exchange.

Both ends build and read messages with these classes, so a field is named in one place
(docs/INTERNALS.md's message table is checked against this module by a test). On the wire a
message is a plain tuple, its tag (the class name) first: `pack` and `unpack` convert. Pickling a
tuple of builtins costs about a microsecond each way; pickling the NamedTuple itself (a class
reference plus its ``__reduce__``) costs five times that, on a round trip of about forty.

Connections (see `runtime/worker.py`): *data* carries everything but cancels and replies to
upstream calls, which go on *control* (read by its own thread in the worker, so they reach a job
while it runs); *reply* carries only the outcome of a direct call. Each connection opens with a
`Hello` naming it.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, TypedDict, Union

__all__ = [
    "CONNECTIONS",
    "KERNEL_TO_WORKER",
    "MESSAGES",
    "WORKER_TO_KERNEL",
    "Call",
    "Cancel",
    "Cancelled",
    "ChainedError",
    "Error",
    "ErrorInfo",
    "Hello",
    "Load",
    "LoadOptions",
    "Log",
    "Message",
    "Moved",
    "Output",
    "Progress",
    "Ready",
    "RemoteFrame",
    "Reply",
    "Result",
    "SetupFailed",
    "Shutdown",
    "Skipped",
    "Swap",
    "SwapFailed",
    "Swapped",
    "Undecodable",
    "UpstreamCall",
    "pack",
    "pack_call",
    "unpack",
]


#: one frame of the user's code: (file name, line number, function, source line)
RemoteFrame = tuple[str, int, str, str]


class ChainedError(TypedDict):
    """An exception that led to a reported one (its cause or context)."""

    type_name: str
    message: str
    frames: list[RemoteFrame]
    relation: Literal["cause", "context"]  # how it led to the next exception


class ErrorInfo(TypedDict):
    """An exception described so the kernel can rebuild it (`pickled`) or at least report it,
    and show it as IPython shows a local one (`frames`, `chain`)."""

    type_name: str  # "module.QualName"
    message: str
    traceback: str  # formatted in the worker, the user's frames only
    pickled: bytes | None  # None when the exception cannot be pickled
    frames: list[RemoteFrame]  # the user's frames, innermost last
    chain: list[ChainedError]  # the exceptions before this one, oldest first


class _LoadOptions(TypedDict):
    kind: Literal["function", "model"]
    restart_on_error: bool
    sources: dict[str, list[str]]  # file name -> source lines, for tracebacks
    busy_poll: float  # seconds an idle worker polls for its next call before sleeping


class LoadOptions(_LoadOptions, total=False):
    """How the worker serves (the keys below are set by the kernel's connection to it)."""

    files_by_content: bool  # the kernel does not see the worker's files: Files take content
    shared_memory: bool  # both ends can share memory: large buffers go through it
    shm_keep_seconds: float  # how long an unused shared-memory segment is kept for reuse


# -- kernel -> worker ----------------------------------------------------------------------------


class Load(NamedTuple):
    """Data: the function or model to serve, pickled by value; the worker runs `__setup__`."""

    payload: bytes
    options: LoadOptions


class Call(NamedTuple):
    """Data: run one job. Flagged `DIRECT_CALL` in its frame when its caller reads the outcome
    on the reply connection itself."""

    job: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Swap(NamedTuple):
    """Data: new code for the live instance, keeping its `__setup__` state; answered by
    `Swapped` or `SwapFailed` with the same `swap`."""

    swap: int
    payload: bytes
    sources: dict[str, list[str]]


class Cancel(NamedTuple):
    """Control: cancel a job (interrupt it if it runs, skip it if it has not started)."""

    job: str


class Reply(NamedTuple):
    """Control: the outcome of an `UpstreamCall` (`value` is the result, or the exception)."""

    request: int
    ok: bool
    value: Any


class Shutdown(NamedTuple):
    """Data or control: exit now."""


# -- worker -> kernel ----------------------------------------------------------------------------


class Hello(NamedTuple):
    """First message on each connection: which worker, which connection it is, its view of the
    filesystem (`_files.filesystem_id`: equal to the kernel's when they share files) and whether
    it can share memory (`_shm.available`)."""

    worker: str
    connection: Literal["data", "control", "reply"]
    python: tuple[int, int, int]
    pid: int
    files: str
    shm: bool


class Ready(NamedTuple):
    """Data: `__setup__` finished; the worker serves calls."""

    setup_seconds: float
    setup_at: float


class SetupFailed(NamedTuple):
    """Data: loading or `__setup__` raised; the worker exits."""

    error: ErrorInfo


class Result(NamedTuple):
    """Data (or reply, for a direct call): a job's return value and when it ran (worker clock)."""

    job: str
    value: Any
    started_at: float
    finished_at: float


class Output(NamedTuple):
    """Data: one item streamed by a generator job."""

    job: str
    item: Any


class Error(NamedTuple):
    """Data: a job raised. `restarting`: the worker exits next (restart_on_error or
    FatalException), so its exit is expected and blames no job."""

    job: str
    error: ErrorInfo
    restarting: bool


class Skipped(NamedTuple):
    """Data: a job cancelled before it started was not run."""

    job: str


class Cancelled(NamedTuple):
    """Data: a running job was interrupted by its cancel."""

    job: str


class Log(NamedTuple):
    """Data: text a job printed (`job` is None for `__setup__`'s output)."""

    job: str | None
    stream: Literal["stdout", "stderr"]
    text: str


class Progress(NamedTuple):
    """Data: a job's `sieve.report_progress(fraction, message)`."""

    job: str | None
    fraction: float | None
    message: str


class UpstreamCall(NamedTuple):
    """Data: user code called another function (`function.get(...).run()`); answered by a
    `Reply` with the same `request` on the control connection."""

    request: int
    job: str | None
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Swapped(NamedTuple):
    """Data: the worker took the new code of `Swap` number `swap`."""

    swap: int
    at: float


class SwapFailed(NamedTuple):
    """Data: the new code of `Swap` number `swap` failed to load; the worker keeps serving the
    code it had."""

    swap: int
    error: ErrorInfo


class Undecodable(NamedTuple):
    """Data: a call could not be unpickled here (a type the worker cannot import); its job
    fails, the worker carries on. `direct`: it was a direct call."""

    error: ErrorInfo
    direct: bool


class Moved(NamedTuple):
    """Reply: a direct call's outcome went on the data connection instead (it printed, failed,
    or was cancelled), where the kernel's reader settles it in order."""

    job: str | None


KERNEL_TO_WORKER: tuple[type[Any], ...] = (Load, Call, Swap, Cancel, Reply, Shutdown)
WORKER_TO_KERNEL: tuple[type[Any], ...] = (
    Hello,
    Ready,
    SetupFailed,
    Result,
    Output,
    Error,
    Skipped,
    Cancelled,
    Log,
    Progress,
    UpstreamCall,
    Swapped,
    SwapFailed,
    Undecodable,
    Moved,
)
MESSAGES: dict[str, type[Any]] = {cls.__name__: cls for cls in KERNEL_TO_WORKER + WORKER_TO_KERNEL}
#: the connections each message travels on
CONNECTIONS: dict[type[Any], tuple[str, ...]] = {
    **{cls: ("data",) for cls in KERNEL_TO_WORKER + WORKER_TO_KERNEL},
    Cancel: ("control",),
    Reply: ("control",),
    Shutdown: ("data", "control"),
    Hello: ("data", "control", "reply"),
    Result: ("data", "reply"),
    Moved: ("reply",),
}

Message = Union[  # noqa: UP007 - a runtime alias, spelled so Python 3.10 can evaluate it
    Load,
    Call,
    Swap,
    Cancel,
    Reply,
    Shutdown,
    Hello,
    Ready,
    SetupFailed,
    Result,
    Output,
    Error,
    Skipped,
    Cancelled,
    Log,
    Progress,
    UpstreamCall,
    Swapped,
    SwapFailed,
    Undecodable,
    Moved,
]


def pack(message: Message) -> tuple[Any, ...]:
    """The wire form of `message`: its tag, then its fields."""
    return (type(message).__name__, *message)


def pack_call(job: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """`pack(Call(job, args, kwargs))`, without making the `Call` first (a burst packs
    hundreds, and the named tuple costs ten times the plain one)."""
    return ("Call", job, args, kwargs)


def unpack(raw: tuple[Any, ...]) -> Message:
    """The message a wire tuple stands for.

    Raises:
        ValueError: not a message of this vocabulary (a peer of another version).
    """
    try:
        cls, size = _SHAPES[raw[0]]
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"not a worker-protocol message: {raw!r:.200}") from exc
    if type(raw) is not tuple or len(raw) != size:
        raise ValueError(f"not a worker-protocol message: {raw!r:.200}")
    # (`tuple.__new__` is what the class's `_make` calls, without its Python frame: this runs
    # for every message)
    message: Message = tuple.__new__(cls, raw[1:])
    return message


#: each message's class and the length of its wire tuple (the tag and the fields)
_SHAPES: dict[str, tuple[type[Any], int]] = {
    name: (cls, 1 + len(cls._fields)) for name, cls in MESSAGES.items()
}
