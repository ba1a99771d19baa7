"""Frames and authentication for the kernel <-> worker channel (a Unix domain socket).

A frame is ``[u32 n_buffers][u64 body length][u64 buffer length] * n_buffers`` followed by the
body (a pickle, protocol 5) and its out-of-band buffers, so large arrays cross the socket without
being copied into the pickle. Each message is a tuple whose first item names it (see
`runtime/worker.py` for the vocabulary). Both ends prove they know the worker's secret with an
HMAC challenge/response before any pickle is read, because pickles execute code.
"""

from __future__ import annotations

import hmac
import os
import pickle
import socket
import struct
import threading
from typing import Any

import cloudpickle

__all__ = [
    "AuthenticationError",
    "Channel",
    "ChannelClosed",
    "UndecodableMessage",
    "authenticate_client",
    "authenticate_server",
    "dumps",
    "loads",
]

_PREFIX = struct.Struct("!IQ")
_LENGTH = struct.Struct("!Q")
_CHALLENGE_BYTES = 32
_DIGEST = "sha256"
#: buffers at least this big travel out of band; smaller ones stay inside the pickle
_OOB_THRESHOLD = 64 * 1024
_MAX_BUFFERS = 1 << 16
#: bytes asked of the socket per read
_CHUNK = 256 * 1024


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
        body = cloudpickle.dumps(obj, protocol=5, buffer_callback=keep_large)
    return body, buffers


def loads(body: bytes | bytearray | memoryview, buffers: list[bytearray]) -> Any:
    """Inverse of `dumps`."""
    return pickle.loads(body, buffers=buffers)


class Channel:
    """One authenticated socket carrying frames; `send` is thread-safe, `recv` is for one reader."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()
        self._closed = False
        self._rbuf = bytearray()
        self._rpos = 0

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, message: Any) -> None:
        """Pickle and send one message. Raises `ChannelClosed` if the peer is gone."""
        body, buffers = dumps(message)
        self.send_raw(body, buffers)

    def send_raw(self, body: bytes, buffers: list[pickle.PickleBuffer]) -> None:
        if not buffers:  # the common case: one small write
            frame = _PREFIX.pack(0, len(body)) + body
            with self._send_lock:
                try:
                    self._sock.sendall(frame)
                except OSError as exc:
                    raise ChannelClosed(str(exc)) from exc
            return
        views = [b.raw() for b in buffers]
        header = _PREFIX.pack(len(views), len(body)) + b"".join(
            _LENGTH.pack(v.nbytes) for v in views
        )
        parts: list[bytes | memoryview] = [header, body, *views]
        with self._send_lock:
            try:
                _sendall_parts(self._sock, parts)
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc

    def recv(self) -> Any:
        """Block until one whole message arrives and return it. Raises `ChannelClosed` at EOF."""
        self._fill(_PREFIX.size)
        n_buffers, body_len = _PREFIX.unpack_from(self._rbuf, self._rpos)
        self._rpos += _PREFIX.size
        if n_buffers > _MAX_BUFFERS:
            raise ChannelClosed(f"corrupt frame: {n_buffers} buffers")
        lengths: tuple[int, ...] = ()
        if n_buffers:
            self._fill(_LENGTH.size * n_buffers)
            lengths = struct.unpack_from(f"!{n_buffers}Q", self._rbuf, self._rpos)
            self._rpos += _LENGTH.size * n_buffers
        body = self._take(body_len)
        buffers = [self._take(n) for n in lengths]
        try:
            return loads(body, buffers)
        except Exception as exc:
            raise UndecodableMessage(f"{type(exc).__name__}: {exc}") from exc

    def pending(self) -> bool:
        """Whether bytes of a next message are already buffered (more work is waiting)."""
        return self._rpos < len(self._rbuf)

    def _fill(self, need: int) -> None:
        """Make at least `need` bytes available in the read buffer (reading in large chunks,
        so a burst of small messages costs one system call, not three per message)."""
        if len(self._rbuf) - self._rpos >= need:
            return
        if self._rpos:
            del self._rbuf[: self._rpos]
            self._rpos = 0
        while len(self._rbuf) < need:
            try:
                chunk = self._sock.recv(max(_CHUNK, need - len(self._rbuf)))
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc
            if not chunk:
                raise ChannelClosed("peer closed the channel")
            self._rbuf += chunk

    def _take(self, n: int) -> bytearray:
        """The next `n` bytes. Large ones are read straight into their own buffer (one copy)."""
        available = len(self._rbuf) - self._rpos
        if n <= available or n <= _CHUNK:
            self._fill(n)
            out = self._rbuf[self._rpos : self._rpos + n]
            self._rpos += n
            return out
        out = bytearray(n)
        view = memoryview(out)
        view[:available] = self._rbuf[self._rpos :]
        self._rbuf.clear()
        self._rpos = 0
        got = available
        while got < n:
            try:
                k = self._sock.recv_into(view[got:], n - got)
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc
            if k == 0:
                raise ChannelClosed("peer closed the channel")
            got += k
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def _sendall_parts(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """`sendmsg` with scatter/gather until everything is written (no joining copies)."""
    pending = [memoryview(p).cast("B") for p in parts if len(p)]
    while pending:
        sent = sock.sendmsg(pending[:512])
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
