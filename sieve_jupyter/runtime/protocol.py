"""Frames and authentication for the kernel <-> worker channel (a Unix domain socket).

A frame is ``[u8 flags][u24 n_buffers][u64 body length][u64 buffer length] * n_buffers`` followed
by the body (a pickle, protocol 5) and its out-of-band buffers, so large arrays cross the socket
without being copied into the pickle. The flags say how to handle a frame before it is unpickled
(`DIRECT_CALL`), so they hold even for a frame that cannot be. Each message is a tuple whose
first item names it (see `runtime/worker.py` for the vocabulary). Both ends prove they know the
worker's secret with an HMAC challenge/response before any pickle is read, because pickles
execute code.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hmac
import os
import pickle
import queue
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from sieve_jupyter.runtime._pickling import dumps as dumps_by_value

__all__ = [
    "DIRECT_CALL",
    "AuthenticationError",
    "Channel",
    "ChannelClosed",
    "UndecodableMessage",
    "authenticate_client",
    "authenticate_server",
    "dumps",
    "encode",
    "loads",
]

_PREFIX = struct.Struct("!IQ")  # (flags << 24 | n_buffers, body length)
_PREFIX_SIZE = _PREFIX.size
_BUFFERS_MASK = (1 << 24) - 1
#: frame flag: a call whose outcome goes back on the reply channel (see runtime/worker.py)
DIRECT_CALL = 0x01
_LENGTH = struct.Struct("!Q")
_CHALLENGE_BYTES = 32
_DIGEST = "sha256"
#: buffers at least this big travel out of band; smaller ones stay inside the pickle
_OOB_THRESHOLD = 64 * 1024
_MAX_BUFFERS = 1 << 16
#: bytes asked of the socket per read
_CHUNK = 256 * 1024
#: frames up to this size are written by one system call, which a signal cannot cut in half
#: (well under a Unix socket's buffer); the main thread leaves larger ones to a helper thread
_ATOMIC_WRITE = 64 * 1024


class ChannelClosed(ConnectionError):
    """The other end closed the channel (or died)."""


class UndecodableMessage(Exception):
    """A whole frame arrived but could not be unpickled (e.g. it refers to a type this process
    cannot import). The channel is still in step: the next `recv` reads the next frame."""


class AuthenticationError(ConnectionError):
    """The peer does not know the worker's secret."""


def dumps(obj: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Pickle `obj` with protocol 5, returning the body and its out-of-band buffers.

    The C pickler is tried first (fast); objects it cannot handle (lambdas, classes defined in a
    notebook) fall back to cloudpickle, which pickles them by value.
    """
    buffers: list[pickle.PickleBuffer] = []

    def keep_large(buf: pickle.PickleBuffer) -> bool:
        # Returning True keeps the buffer inside the pickle stream.
        if buf.raw().nbytes < _OOB_THRESHOLD:
            return True
        buffers.append(buf)
        return False

    try:
        body = pickle.dumps(obj, protocol=5, buffer_callback=keep_large)
        if b"__main__" in body:  # a notebook-defined Enum member etc.: the worker cannot import it
            raise pickle.PicklingError("refers to __main__; pickle by value")
    except (pickle.PicklingError, TypeError, AttributeError):
        buffers.clear()
        body = dumps_by_value(obj, buffer_callback=keep_large)
    return body, buffers


class _MainThreadWriter:
    """Writes large frames for the main thread (see `Channel.write`), on one daemon thread:
    a frame being written never keeps the interpreter from exiting, and frames the main thread
    handed over go out in the order it handed them."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], concurrent.futures.Future[None]]]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, write: Callable[[], None]) -> None:
        """Run `write` on the helper thread and wait for it (an interrupt stops the waiting)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="sieve-write", daemon=True
                )
                self._thread.start()
        self._jobs.put((write, done))
        done.result()

    def _serve(self) -> None:
        while True:
            write, done = self._jobs.get()
            try:
                write()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                done.set_exception(exc)
            else:
                done.set_result(None)


_main_thread_writer = _MainThreadWriter()


def encode(message: Any, flags: int = 0) -> list[bytes | memoryview]:
    """Pickle `message` into a frame for `Channel.write` (raises, writing nothing, if it cannot
    be pickled)."""
    body, buffers = dumps(message)
    return _frame_parts(body, buffers, flags)


def loads(body: bytes | bytearray | memoryview, buffers: list[bytearray]) -> Any:
    """Inverse of `dumps`."""
    return pickle.loads(body, buffers=buffers)


class _PartialFrame:
    """A frame whose header has been read but whose parts have not all arrived yet."""

    __slots__ = ("flags", "sizes", "parts", "into", "got")

    def __init__(self, flags: int, sizes: list[int]) -> None:
        self.flags = flags
        self.sizes = sizes  # the body's length, then each out-of-band buffer's
        self.parts: list[bytearray] = []
        self.into: bytearray | None = None  # a large part being read straight into place
        self.got = 0


class Channel:
    """One authenticated socket carrying frames; `send` is thread-safe, `recv` is for one reader.

    `recv` can be interrupted (a `KeyboardInterrupt` raised while it waits) and called again:
    what was read of a frame is kept, so the channel stays in step.

    `spin`: seconds `recv` polls the socket before it sleeps. Waking a sleeping process on
    another CPU costs tens of microseconds (more in a VM, where it is an inter-processor
    interrupt through the hypervisor), several times the rest of a round trip; a side that
    expects an answer within microseconds polls instead, yielding the CPU between polls so a
    peer on the same CPU still runs. 0 (the default) never polls.
    """

    def __init__(self, sock: socket.socket, *, spin: float = 0.0) -> None:
        self._sock = sock
        self.spin = spin
        self._send_lock = threading.Lock()
        self._closed = False
        # Bytes read but not yet consumed are `_rbuf[_rpos:_rend]`. The buffer is allocated
        # once and read into in place: a fresh `recv(n)` per read costs an allocation of `n`
        # bytes, which for a large `n` is an mmap, its page faults and an munmap every time.
        self._rbuf = bytearray(_CHUNK)
        self._rview = memoryview(self._rbuf)
        self._rpos = 0
        self._rend = 0
        self._partial: _PartialFrame | None = None
        self._poller: select.poll | None = None
        #: the flags of the last frame `recv` read (set even when it could not be unpickled)
        self.flags = 0

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    # -- sending -----------------------------------------------------------------------------

    def send(self, message: Any, flags: int = 0) -> None:
        """Pickle and send one message. Raises `ChannelClosed` if the peer is gone, and the
        pickling error (having written nothing) if the message cannot be pickled."""
        self.write(encode(message, flags))

    def write(self, frame: list[bytes | memoryview]) -> None:
        """Write one frame made by `encode`. Raises `ChannelClosed` if the peer is gone.

        A frame is never left half written by a `KeyboardInterrupt` (the peer could no longer
        tell where frames start). A small frame goes out in one system call. A large one, which
        can block midway while the peer catches up, is written by a helper thread when the
        caller is the main thread (the only one Python interrupts): an interrupt then stops
        the waiting, not the writing, and propagates while the frame goes out whole.
        """
        if len(frame) == 1 and len(frame[0]) <= _ATOMIC_WRITE:  # the common case
            with self._send_lock:
                try:
                    self._sock.sendall(frame[0])
                except OSError as exc:
                    raise ChannelClosed(str(exc)) from exc
            return
        if len(frame) > 1 and all(type(part) is bytes for part in frame):
            frame = [b"".join(frame)]
        pending = [memoryview(part).cast("B") for part in frame]
        if (
            (len(pending) > 1 or pending[0].nbytes > _ATOMIC_WRITE)
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        ):
            _main_thread_writer.run(functools.partial(self._write_pending, pending))
        else:
            self._write_pending(pending)

    def _write_pending(self, pending: list[memoryview]) -> None:
        with self._send_lock:
            try:
                while pending:
                    _consume(pending, self._sock.sendmsg(pending[:512]))
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc

    # -- receiving ---------------------------------------------------------------------------

    def recv(self) -> Any:
        """Block until one whole message arrives and return it. Raises `ChannelClosed` at EOF,
        `UndecodableMessage` for a whole frame that cannot be unpickled."""
        frame = self._partial
        if frame is None:
            if self._rend - self._rpos < _PREFIX_SIZE:
                self._fill(_PREFIX_SIZE)
            word, body_len = _PREFIX.unpack_from(self._rbuf, self._rpos)
            self.flags = word >> 24
            n_buffers = word & _BUFFERS_MASK
            if not n_buffers and body_len <= len(self._rbuf) - _PREFIX_SIZE:
                # The common case: unpickle straight from the read buffer (no copy).
                if self._rend - self._rpos < _PREFIX_SIZE + body_len:
                    self._fill(_PREFIX_SIZE + body_len)
                start = self._rpos + _PREFIX_SIZE
                self._rpos = end = start + body_len
                return _decode(self._rview[start:end], [])
            frame = self._partial = self._read_header(n_buffers, body_len)
        while len(frame.parts) < len(frame.sizes):
            frame.parts.append(self._read_part(frame, frame.sizes[len(frame.parts)]))
        self._partial = None
        self.flags = frame.flags
        body, *buffers = frame.parts
        return _decode(body, buffers)

    def pending(self) -> bool:
        """Whether bytes of a next message are already buffered (more work is waiting)."""
        return self._rpos < self._rend

    def _read_header(self, n_buffers: int, body_len: int) -> _PartialFrame:
        if n_buffers > _MAX_BUFFERS:
            raise ChannelClosed(f"corrupt frame: {n_buffers} buffers")
        size = _PREFIX.size + _LENGTH.size * n_buffers
        self._fill(size)  # nothing is consumed until the whole header is here
        lengths = struct.unpack_from(f"!{n_buffers}Q", self._rbuf, self._rpos + _PREFIX.size)
        self._rpos += size
        return _PartialFrame(self.flags, [body_len, *lengths])

    def _fill(self, need: int) -> None:
        """Make at least `need` bytes available from `_rpos` (reading as much as the socket
        has, so a burst of small messages costs one system call, not one per message)."""
        if self._rend - self._rpos >= need:
            return
        if self._rpos == self._rend:
            self._rpos = self._rend = 0
        elif self._rpos:  # move the unread tail to the front
            tail = self._rend - self._rpos
            self._rview[:tail] = self._rview[self._rpos : self._rend]  # (a memmove)
            self._rpos, self._rend = 0, tail
        if need > len(self._rbuf):
            grown = bytearray(need)
            grown[: self._rend] = self._rview[: self._rend]
            self._rview.release()
            self._rbuf, self._rview = grown, memoryview(grown)
        view = self._rview
        while self._rend < need:
            self._rend += self._recv_into(view[self._rend :])

    def _read_part(self, frame: _PartialFrame, n: int) -> bytearray:
        """The next `n` bytes, as a buffer of their own. Large ones are read straight into it
        (one copy), keeping their progress in `frame` so an interrupted read can resume."""
        if frame.into is None:
            available = self._rend - self._rpos
            if n <= available or n <= _CHUNK:
                self._fill(n)
                out = self._rbuf[self._rpos : self._rpos + n]
                self._rpos += n
                return out
            frame.into = bytearray(n)
            frame.into[:available] = self._rview[self._rpos : self._rend]
            frame.got = available
            self._rpos = self._rend = 0
        out = frame.into
        with memoryview(out) as view:
            while frame.got < n:
                frame.got += self._recv_into(view[frame.got :])
        frame.into = None
        return out

    def _recv_into(self, view: memoryview) -> int:
        try:
            if self.spin:
                self._poll(time.perf_counter() + self.spin)
            got = self._sock.recv_into(view)
        except (OSError, ValueError) as exc:  # (ValueError: closed here, its descriptor is -1)
            raise ChannelClosed(str(exc)) from exc
        if not got:
            raise ChannelClosed("peer closed the channel")
        return got

    def _poll(self, deadline: float) -> None:
        """Return once the socket has something to read (or is closed), or at `deadline`."""
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self._sock, select.POLLIN)
        poll = self._poller.poll
        while not poll(0):  # (cheaper than a failing non-blocking read: no exception)
            if time.perf_counter() > deadline:
                return
            os.sched_yield()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def _decode(body: bytes | bytearray | memoryview, buffers: list[bytearray]) -> Any:
    try:
        return loads(body, buffers)
    except Exception as exc:
        raise UndecodableMessage(f"{type(exc).__name__}: {exc}") from exc


def _frame_parts(
    body: bytes, buffers: list[pickle.PickleBuffer], flags: int = 0
) -> list[bytes | memoryview]:
    if not buffers:
        return [_PREFIX.pack(flags << 24, len(body)) + body]
    views = [b.raw() for b in buffers]
    header = _PREFIX.pack(flags << 24 | len(views), len(body)) + b"".join(
        _LENGTH.pack(v.nbytes) for v in views
    )
    return [header, body, *views]


def _consume(pending: list[memoryview], sent: int) -> None:
    """Drop `sent` bytes from the front of `pending` (what `sendmsg` wrote)."""
    while sent:
        head = pending[0]
        if sent >= head.nbytes:
            sent -= head.nbytes
            pending.pop(0)
        else:
            pending[0] = head[sent:]
            sent = 0


def _recv_exact_raw(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AuthenticationError("peer closed the connection during authentication")
        data += chunk
    return data


def _respond(secret: bytes, challenge: bytes) -> bytes:
    return hmac.new(secret, challenge, _DIGEST).digest()


def authenticate_server(sock: socket.socket, secret: bytes) -> None:
    """Manager side of the mutual challenge/response (raw bytes, no pickles yet)."""
    mine = os.urandom(_CHALLENGE_BYTES)
    sock.sendall(mine)
    answer = _recv_exact_raw(sock, 32)
    if not hmac.compare_digest(answer, _respond(secret, mine)):
        raise AuthenticationError("worker failed the challenge: wrong secret")
    theirs = _recv_exact_raw(sock, _CHALLENGE_BYTES)
    sock.sendall(_respond(secret, theirs))


def authenticate_client(sock: socket.socket, secret: bytes) -> None:
    """Worker side of the mutual challenge/response."""
    challenge = _recv_exact_raw(sock, _CHALLENGE_BYTES)
    sock.sendall(_respond(secret, challenge))
    mine = os.urandom(_CHALLENGE_BYTES)
    sock.sendall(mine)
    answer = _recv_exact_raw(sock, 32)
    if not hmac.compare_digest(answer, _respond(secret, mine)):
        raise AuthenticationError("manager failed the challenge: wrong secret")
