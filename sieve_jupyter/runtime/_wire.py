"""A message as it goes on the wire: pickled, and described by its frame header.

A frame starts ``[u8 flags][u24 n_buffers][u64 body length]``. In its plain form the buffer
lengths follow (``u64`` each), then the body (a pickle, protocol 5) and the out-of-band buffers
(anything of `OOB_THRESHOLD` or more travels outside the pickle). In its *extended* form (flag
`EXTENDED`) an extension follows instead: ``[u32 segment][u32 generation][u16 descriptors]
[u16 new segment][u32 reserved][u64 segment size]`` and a table of ``(u64 length, u64 offset)``
for the body and each buffer, where the offset is `INLINE` (the part follows in the stream) or
where the part sits in the shared segment the frame leases (see `_shm.py`). The frame's
descriptors travel with its first bytes (``SCM_RIGHTS``): the segment's first, when it is new to
the receiver, then one per file whose content travels with the message (see `_files.py`).

A `NOTICE` frame is for the channel itself (shared-memory releases and retirements); `recv`
handles it and never returns it.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from sieve_jupyter.runtime import _files
from sieve_jupyter.runtime._pickling import dumps as dumps_by_value

__all__ = [
    "DIRECT_CALL",
    "EXTENDED",
    "NOTICE",
    "SLEEP_AFTER",
    "Frame",
    "dumps",
    "encode",
    "encode_small",
    "loads",
]

#: frame flag: a call whose outcome goes back on the reply channel (see runtime/worker.py)
DIRECT_CALL = 0x01
#: frame flag: the sender waits on the receiver's CPU, so the receiver must not poll for its
#: next frame after this one (it would take that CPU from the sender; see manager/_affinity.py)
SLEEP_AFTER = 0x02
#: frame flag: the extended header follows (shared memory, descriptors)
EXTENDED = 0x80
#: frame flag: a notice for the channel itself, never returned by `recv`
NOTICE = 0x40
SPECIAL = EXTENDED | NOTICE

PREFIX = struct.Struct("!IQ")  # (flags << 24 | n_buffers, body length)
_PREFIX_SIZE = PREFIX.size
BUFFERS_MASK = (1 << 24) - 1
LENGTH = struct.Struct("!Q")
EXTENSION = struct.Struct("!IIHHIQ")
PART = struct.Struct("!QQ")
NO_SEGMENT = 0xFFFFFFFF
INLINE = (1 << 64) - 1
#: buffers at least this big travel out of band; smaller ones stay inside the pickle
OOB_THRESHOLD = 64 * 1024
MAX_BUFFERS = 1 << 16


class Frame:
    """A message pickled for `Channel.write` whose parts are not all small: its pickle body,
    its out-of-band buffers (the callers' memory: not copied yet), and the files whose
    content goes as descriptors. Where each part goes is decided when it is written."""

    __slots__ = ("body", "buffers", "files", "flags")

    def __init__(
        self, flags: int, body: bytes, buffers: list[memoryview], files: list[tuple[str, int]]
    ) -> None:
        self.flags = flags
        self.body = body
        self.buffers = buffers
        self.files = files

    @property
    def nbytes(self) -> int:
        return len(self.body) + sum(b.nbytes for b in self.buffers)


def dumps(obj: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Pickle `obj` with protocol 5, returning the body and its out-of-band buffers.

    The C pickler is tried first (fast); objects it cannot handle (lambdas, classes defined in a
    notebook, memoryviews) fall back to cloudpickle, which pickles them by value.
    """
    return _dumps(obj, None)


def _dumps(obj: Any, files: _files.Outgoing | None) -> tuple[bytes, list[pickle.PickleBuffer]]:
    buffers: list[pickle.PickleBuffer] = []

    def keep_large(buf: pickle.PickleBuffer) -> bool:
        # Returning True keeps the buffer inside the pickle stream.
        if buf.raw().nbytes < OOB_THRESHOLD:
            return True
        buffers.append(buf)
        return False

    if files is not None:
        _files.sending_content(files)
    try:
        try:
            body = pickle.dumps(obj, protocol=5, buffer_callback=keep_large)
            if _refers_to_main(body):
                raise pickle.PicklingError("refers to __main__; pickle by value")
        except (pickle.PicklingError, TypeError, AttributeError):
            buffers.clear()
            if files is not None:
                files.paths.clear()
            body = dumps_by_value(obj, buffer_callback=keep_large)
    finally:
        if files is not None:
            _files.sending_content(None)
    return body, buffers


def _refers_to_main(body: bytes) -> bool:
    """Whether a pickle refers to `__main__` (a notebook-defined Enum member, say), which the
    peer cannot import: such a message is pickled by value instead. (`find`, not `in`: twice
    as fast on a small body, and this runs for every message.)"""
    return body.find(b"__main__") >= 0


class _LargeBuffer(Exception):
    """A buffer to send out of band: not a message for `encode`'s fast path."""


def _inline_only(buffer: pickle.PickleBuffer) -> bool:
    if buffer.raw().nbytes < OOB_THRESHOLD:
        return True  # (kept inside the pickle)
    raise _LargeBuffer


def encode(message: Any, flags: int = 0, *, files_by_content: bool = False) -> bytes | Frame:
    """Pickle `message` into a frame for `Channel.write` (raises, writing nothing, if it cannot
    be pickled): the bytes of a small frame, or a `Frame`.

    `files_by_content`: the receiver does not share this process's files, so `sieve.File`s
    take their content along (`Channel.encode` sets it for its peer).
    """
    body = None if files_by_content else _plain_body(message)
    buffers: list[pickle.PickleBuffer] = []
    paths: list[tuple[str, int]] = []
    if body is None:  # (anything but the common case)
        files = _files.Outgoing() if files_by_content else None
        body, buffers = _dumps(message, files)
        if files is not None:
            paths = files.paths
    if not buffers and not paths and len(body) <= OOB_THRESHOLD:
        return PREFIX.pack(flags << 24, len(body)) + body
    return Frame(flags, body, [b.raw() for b in buffers], paths)


def encode_small(
    messages: list[Any], limit: int | None = None, *, files_by_content: bool = False
) -> bytes | None:
    """The small frames of `messages` (no flags), joined for one write, each message pickled
    on its own (an object in several of them reaches the receiver as one copy per message).
    None, having written nothing, unless every message takes `encode`'s common case with a
    small frame and, with `limit`, all of them take at most `limit` bytes: then `encode` each
    (which also says which cannot be pickled)."""
    if files_by_content:
        return None
    parts: list[bytes] = []
    total = 0
    for message in messages:
        body = _plain_body(message)
        if body is None or len(body) > OOB_THRESHOLD:
            return None
        total += _PREFIX_SIZE + len(body)
        if limit is not None and total > limit:
            return None
        parts.append(PREFIX.pack(0, len(body)))
        parts.append(body)
    return b"".join(parts)


def _plain_body(message: Any) -> bytes | None:
    """`message` pickled by the C pickler in one go, when that is all it takes: the common
    case, with nothing to set up. None when it is not (a buffer to send out of band, something
    the C pickler cannot take or that refers to `__main__`): `_dumps` then does it."""
    try:
        body = pickle.dumps(message, protocol=5, buffer_callback=_inline_only)
    except (_LargeBuffer, pickle.PicklingError, TypeError, AttributeError):
        return None
    return None if _refers_to_main(body) else body


def loads(body: bytes | bytearray | memoryview, buffers: list[Any]) -> Any:
    """Inverse of `dumps`."""
    return pickle.loads(body, buffers=buffers)


def plain_header(frame: Frame) -> bytes:
    """The header of `frame` in the plain form (every part inline, no descriptors)."""
    return PREFIX.pack(frame.flags << 24 | len(frame.buffers), len(frame.body)) + b"".join(
        LENGTH.pack(v.nbytes) for v in frame.buffers
    )


def extended_header(
    frame: Frame,
    offsets: list[int],
    segment: int,
    generation: int,
    descriptors: int,
    new_segment: bool,
    segment_size: int,
) -> bytes:
    """The header of `frame` in the extended form; `offsets` has the body's first."""
    parts = [len(frame.body), *(v.nbytes for v in frame.buffers)]
    return (
        PREFIX.pack((frame.flags | EXTENDED) << 24 | len(frame.buffers), len(frame.body))
        + EXTENSION.pack(segment, generation, descriptors, int(new_segment), 0, segment_size)
        + b"".join(PART.pack(n, offset) for n, offset in zip(parts, offsets, strict=True))
    )


def notice(kind: int, payload: bytes) -> bytes:
    """A notice frame: ``kind`` (a byte) and its payload."""
    body = bytes([kind]) + payload
    return PREFIX.pack(NOTICE << 24, len(body)) + body
