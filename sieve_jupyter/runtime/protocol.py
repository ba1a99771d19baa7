"""Frames and authentication for the kernel <-> worker channel (a Unix domain socket).

A frame is a pickle (protocol 5) and its out-of-band buffers, behind a header (`_wire.py` has
the layout), so large arrays never go through the pickle. On a channel joined to a `ShmLink`
(`_shm.py`) parts of `SHM_THRESHOLD` bytes or more cross through shared memory instead of the
socket: one copy into a segment both processes map, and the receiver rebuilds arrays on it
without copying. Files whose content travels (`_files.py`) pass as descriptors. The flags say
how to handle a frame before it is unpickled (`DIRECT_CALL`, `SLEEP_AFTER`), so they hold even
for a frame that cannot be. Each message is a tuple whose first item names it
(`runtime/messages.py`). Both ends prove they know the worker's secret with an HMAC challenge
before any pickle is read.
"""

from __future__ import annotations

import array
import concurrent.futures
import functools
import os
import queue
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from sieve_jupyter.runtime import _files, _shm
from sieve_jupyter.runtime._auth import (
    AuthenticationError,
    authenticate_client,
    authenticate_server,
)
from sieve_jupyter.runtime._reading import ChannelClosed, FrameReader, UndecodableMessage
from sieve_jupyter.runtime._shm import ALIGN, ShmLink, pack_pairs
from sieve_jupyter.runtime._wire import (
    DIRECT_CALL,
    INLINE,
    NO_SEGMENT,
    SLEEP_AFTER,
    Frame,
    dumps,
    encode,
    encode_small,
    extended_header,
    loads,
    notice,
    plain_header,
)
from sieve_jupyter.runtime.messages import Hello, LoadOptions

__all__ = [
    "DIRECT_CALL",
    "SHM_THRESHOLD",
    "SLEEP_AFTER",
    "AuthenticationError",
    "Channel",
    "ChannelClosed",
    "Frame",
    "ShmLink",
    "UndecodableMessage",
    "authenticate_client",
    "authenticate_server",
    "dumps",
    "encode",
    "join",
    "loads",
    "share_with_worker",
]

#: parts at least this big go through shared memory on a linked channel (measured with
#: benchmarks/bench_large.py --sizes: below 64 KiB the socket is as fast or faster, from
#: 256 KiB shared memory takes about half the time)
SHM_THRESHOLD = 64 * 1024
#: frames up to this size are written by one system call, which a signal cannot cut in half
#: (well under a Unix socket's buffer); the main thread leaves larger ones to a helper thread
_ATOMIC_WRITE = 64 * 1024


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
                self._thread = threading.Thread(target=self._serve, name="sieve-write", daemon=True)
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


class Channel(FrameReader):
    """One authenticated socket carrying frames; `send` is thread-safe, `recv` is for one reader.

    `recv` can be interrupted (a `KeyboardInterrupt` raised while it waits) and called again:
    what was read of a frame is kept, so the channel stays in step (`_reading.py`).

    `spin`: seconds `recv` polls the socket before it sleeps. Waking a sleeping process on
    another CPU costs tens of microseconds (more in a VM, where it is an inter-processor
    interrupt through the hypervisor), several times the rest of a round trip; a side that
    expects an answer within microseconds polls instead, yielding the CPU between polls so a
    peer on the same CPU still runs. 0 (the default) never polls. Polling stops for a while
    when it does not pay (`readable_within`).

    `link`: the memory shared with the peer (every channel to one peer shares one); None keeps
    every part in the stream. `files_by_content`: the peer does not see this process's files,
    so a `sieve.File` sent on this channel takes its content along.
    """

    def __init__(
        self, sock: socket.socket, *, spin: float = 0.0, link: ShmLink | None = None
    ) -> None:
        self._sock = sock
        self.spin = spin
        self.link = link
        self.files_by_content = False
        #: parts at least this big go through the link's shared memory
        self.shm_threshold = SHM_THRESHOLD
        self._send_lock = threading.Lock()
        self._closed = False
        self._init_reading(sock)

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    # -- sending -----------------------------------------------------------------------------

    def encode(self, message: Any, flags: int = 0) -> bytes | Frame:
        """Pickle `message` into a frame for this channel's peer (see `_wire.encode`)."""
        return encode(message, flags, files_by_content=self.files_by_content)

    def encode_small(self, messages: list[Any], limit: int | None = None) -> bytes | None:
        """The small frames of `messages`, pickled each on its own and joined for one write;
        None when they are not all small and plain (see `_wire.encode_small`)."""
        return encode_small(messages, limit, files_by_content=self.files_by_content)

    def send(self, message: Any, flags: int = 0) -> None:
        """Pickle and send one message. Raises `ChannelClosed` if the peer is gone, and the
        pickling error (having written nothing) if the message cannot be pickled."""
        self.write(encode(message, flags, files_by_content=self.files_by_content))

    def write(self, frame: bytes | Frame) -> None:
        """Write one frame made by `encode`. Raises `ChannelClosed` if the peer is gone.

        A frame is never left half written by a `KeyboardInterrupt` (the peer could no longer
        tell where frames start). A small frame goes out in one system call. A large one, which
        can block midway while the peer catches up (and leases shared memory), is written by a
        helper thread when the caller is the main thread (the only one Python interrupts): an
        interrupt then stops the waiting, not the writing, and propagates while the frame goes
        out whole.
        """
        if type(frame) is bytes and len(frame) <= _ATOMIC_WRITE:  # the common case
            link = self.link
            with self._send_lock:
                if link is not None and link.releases:
                    frame = self._releases_ahead(link) + frame
                try:
                    self._sock.sendall(frame)
                except OSError as exc:
                    raise ChannelClosed(str(exc)) from exc
            return
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        ):
            _main_thread_writer.run(functools.partial(self._write_frame, frame))
        else:
            self._write_frame(frame)

    def _write_frame(self, frame: bytes | Frame) -> None:
        if isinstance(frame, bytes):
            self._send_parts([frame], [])
            return
        link = self.link
        lease = None
        files: list[int] = []
        try:
            lease, offsets = self._place(frame)
            files = [_open_for_sending(path) for path, _ in frame.files]
            parts: list[bytes | memoryview] = [frame.body, *frame.buffers]
            if lease is None and not files:
                self._send_parts([plain_header(frame), *parts], [])
                return
            descriptors = ([lease.fd] if lease is not None and lease.new else []) + files
            header = extended_header(
                frame,
                offsets,
                lease.id if lease else NO_SEGMENT,
                lease.generation if lease else 0,
                len(descriptors),
                bool(lease and lease.new),
                lease.size if lease else 0,
            )
            inline = [p for p, offset in zip(parts, offsets, strict=True) if offset == INLINE]
            self._send_parts([header, *inline], descriptors)
            if lease is not None and link is not None:
                link.sent(lease)
                lease = None
        finally:
            for fd in files:
                os.close(fd)
            if lease is not None and link is not None:
                link.give_back(lease)

    def _place(self, frame: Frame) -> tuple[Any, list[int]]:
        """Copy the frame's large parts into a leased shared segment (when this channel has
        a link). Returns the lease (None: all inline) and each part's offset in it."""
        parts = [memoryview(frame.body), *frame.buffers]
        offsets = [INLINE] * len(parts)
        link = self.link
        if link is None:
            return None, offsets
        large = [i for i, part in enumerate(parts) if part.nbytes >= self.shm_threshold]
        if not large:
            return None, offsets
        total = sum(_aligned(parts[i].nbytes) for i in large)
        try:
            lease = link.lease(total)
        except OSError:  # out of memory or descriptors: the socket still works
            return None, offsets
        try:
            at = 0
            for i in large:
                offsets[i] = at
                lease.put(at, parts[i])
                at += _aligned(parts[i].nbytes)
        except BaseException:
            link.give_back(lease)
            raise
        return lease, offsets

    def _send_parts(self, parts: list[Any], descriptors: list[int]) -> None:
        link = self.link
        with self._send_lock:
            if link is not None and link.releases:
                parts = [self._releases_ahead(link), *parts]
            pending = [memoryview(part).cast("B") for part in parts]
            try:
                if descriptors:
                    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", descriptors))]
                    _consume(pending, self._sock.sendmsg(pending[:512], rights))
                while pending:
                    _consume(pending, self._sock.sendmsg(pending[:512]))
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc

    @staticmethod
    def _releases_ahead(link: ShmLink) -> bytes:
        """A notice of the releases not yet sent, for the frame written next (with the send
        lock held) to carry ahead of itself; the peer reads it first (see `take_releases`)."""
        pairs = link.take_releases()
        return notice(_shm.NOTICE_RELEASE, pack_pairs(pairs)) if pairs else b""

    def send_notice(self, kind: int, pairs: list[tuple[int, int]]) -> None:
        """Send a shared-memory notice (see `ShmLink.notify`). Raises `ChannelClosed`."""
        data = notice(kind, pack_pairs(pairs))
        with self._send_lock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if not self._sleeping:  # (else the wait it woke closes it: see `_sleep`)
            self._sock.close()
        self._close_reading()


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _open_for_sending(path: str) -> int:
    """A descriptor on a file whose content travels; /dev/null if it vanished since it was
    pickled (the receiver then reports the content cut short, naming the file)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


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


def share_with_worker(
    hello: Hello, channels: list[Channel], notices: Channel, options: LoadOptions
) -> ShmLink | None:
    """The kernel's side of what its channels to one worker share with it (the worker does
    the same on `Load`): whether `sieve.File`s take their content along (the worker does not
    see the kernel's files), and memory, when both ends can. Sets `options` to tell the worker.
    Returns the link, or None."""
    by_content = hello.files != _files.filesystem_id()
    for channel in channels:
        channel.files_by_content = by_content
    options["files_by_content"] = by_content
    if not (hello.shm and _shm.available()):
        return None
    link = ShmLink()
    join(link, channels, notices)
    options["shared_memory"] = True
    options["shm_keep_seconds"] = link.keep_seconds
    return link


def join(link: ShmLink, channels: list[Channel], notices: Channel) -> None:
    """Make `channels` (all to one peer) share `link`, sending its notices on `notices` (a
    connection the peer always reads)."""
    for channel in channels:
        channel.link = link
    link.notify = notices.send_notice
