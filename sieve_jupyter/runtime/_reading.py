"""The receiving half of a `Channel`: reading frames from the socket, as a base class.

Bytes are read in large chunks into one buffer allocated per channel, so a burst of small
frames costs one system call, and small frames are unpickled from that buffer in place. A frame
with large parts is read part by part (each into its own buffer), or rebuilt on the shared
segment it leased (`_shm.py`). Descriptors arrive with the bytes they were sent with and wait in
`_descriptors` until their frame's header claims them. `recv` can be interrupted (a
`KeyboardInterrupt` raised while it waits) and called again: what was read of a frame is kept,
so the channel stays in step.
"""

from __future__ import annotations

import array
import collections
import os
import pickle
import select
import socket
import struct
import time
from typing import Any

from sieve_jupyter.runtime import _files
from sieve_jupyter.runtime._shm import NOTICE_RELEASE, NOTICE_RETIRE, ShmLink, unpack_pairs
from sieve_jupyter.runtime._wire import (
    BUFFERS_MASK,
    EXTENDED,
    EXTENSION,
    INLINE,
    LENGTH,
    MAX_BUFFERS,
    NO_SEGMENT,
    NOTICE,
    PART,
    PREFIX,
    SPECIAL,
    loads,
)

__all__ = ["ChannelClosed", "FrameReader", "UndecodableMessage"]

_PREFIX_SIZE = PREFIX.size
_unpack_prefix = PREFIX.unpack_from
_pickle_loads = pickle.loads
#: bytes asked of the socket per read
_CHUNK = 256 * 1024
#: a frame header's bits that take it off `recv`'s common case: the special flags (a notice,
#: the extended header) and the count of out-of-band buffers
_NOT_PLAIN = SPECIAL << 24 | BUFFERS_MASK
#: the largest body `recv` unpickles straight from the read buffer (one that holds it whole)
_SMALL_BODY = _CHUNK - PREFIX.size
#: polls in a row that find nothing before a channel stops polling, and the waits it then
#: sleeps through before it polls again (see `FrameReader.readable_within`)
_SPIN_MISSES = 3
_SPIN_PROBE = 8
#: seconds one turn of a poll may take before the poll counts as crowded out: the yield in it
#: ran another process, which needs this CPU more than a poll does
_CROWDED = 0.00005
#: room for the descriptors of one read (a frame carries at most a segment and the files)
_ANCILLARY = socket.CMSG_SPACE(2 * (1 + _files.MAX_FILE_DESCRIPTORS) * array.array("i").itemsize)
#: as a plain int: `socket.MSG_CTRUNC` is an enum member, and `int & member` goes through the
#: enum's `__and__` (microseconds, on every read)
_MSG_CTRUNC = int(socket.MSG_CTRUNC)
_DONTWAIT = int(socket.MSG_DONTWAIT)
#: what `_poll` answers for a closed channel: its end (the read that follows raises)
_CLOSED = [(-1, select.POLLNVAL)]


class ChannelClosed(ConnectionError):
    """The other end closed the channel (or died)."""


class UndecodableMessage(Exception):
    """A whole frame arrived but could not be unpickled (e.g. it refers to a type this process
    cannot import). The channel is still in step: the next `recv` reads the next frame."""


class _PartialFrame:
    """A frame whose header has been read but whose parts have not all arrived yet."""

    __slots__ = ("descriptors", "flags", "got", "into", "lease", "parts", "plan")

    def __init__(self, flags: int, plan: list[tuple[int, int]]) -> None:
        self.flags = flags
        self.plan = plan  # (length, offset in the leased segment or INLINE), the body first
        self.parts: list[bytearray] = []  # the inline parts read so far
        self.into: bytearray | None = None  # a large part being read straight into place
        self.got = 0
        self.lease: tuple[int, int, bool, int] | None = None  # segment, generation, new, size
        self.descriptors: list[int] = []

    def inline_sizes(self) -> list[int]:
        return [n for n, offset in self.plan if offset == INLINE]


class FrameReader:
    """Reads frames from `_sock` (see the module docstring); `Channel` is the whole channel."""

    _sock: socket.socket
    _closed: bool
    spin: float
    link: ShmLink | None
    #: the flags of the last frame `recv` read (set even when it could not be unpickled)
    flags: int
    shared: bool

    def _init_reading(self, sock: socket.socket) -> None:
        # Bytes read but not yet consumed are `_rbuf[_rpos:_rend]`. The buffer is allocated
        # once and read into in place: a fresh `recv(n)` per read costs an allocation of `n`
        # bytes, which for a large `n` is an mmap, its page faults and an munmap every time.
        self._rbuf = bytearray(_CHUNK)
        self._rview = memoryview(self._rbuf)
        self._rpos = 0
        self._rend = 0
        self._partial: _PartialFrame | None = None
        self._poller: select.poll | None = None
        #: a poll that may sleep is under way (see `_sleep`)
        self._sleeping = False
        #: polls in a row that ran out, and waits left to sleep through without polling
        #: (see `readable_within`)
        self._spin_misses = 0
        self._spin_skips = 0
        #: the next wait sleeps in the read itself (see `sleep_next_wait`)
        self._read_asleep = False
        #: descriptors received, not yet claimed by their frame (a Unix socket hands them over
        #: with the read that reaches the first byte sent with them)
        self._descriptors: collections.deque[int] = collections.deque()
        self._unix = sock.family == socket.AF_UNIX
        self.flags = 0
        #: the last message received was rebuilt on the peer's shared memory (it pins a
        #: segment of the peer for as long as it lives)
        self.shared = False

    def recv(self) -> Any:
        """Block until one whole message arrives and return it. Raises `ChannelClosed` at EOF,
        `UndecodableMessage` for a whole frame that cannot be unpickled."""
        while True:
            frame = self._partial
            if frame is None:
                pos = self._rpos
                if self._rend - pos < _PREFIX_SIZE:
                    self._fill(_PREFIX_SIZE)
                    pos = self._rpos
                word, body_len = _unpack_prefix(self._rbuf, pos)
                if not word & _NOT_PLAIN and body_len <= _SMALL_BODY:
                    # The common case (no flag but the call's own, no out-of-band buffer, a
                    # body that fits the read buffer): unpickled straight from it, no copy.
                    # (This runs for every message, so it keeps to local names.)
                    self.flags = word >> 24
                    end = pos + _PREFIX_SIZE + body_len
                    if self._rend < end:
                        self._fill(_PREFIX_SIZE + body_len)
                        pos = self._rpos
                        end = pos + _PREFIX_SIZE + body_len
                    self._rpos = end
                    self.shared = False
                    try:
                        return _pickle_loads(self._rview[pos + _PREFIX_SIZE : end])
                    except Exception as exc:
                        raise UndecodableMessage(f"{type(exc).__name__}: {exc}") from exc
                flags = self.flags = word >> 24
                if flags & NOTICE:
                    self._read_notice(body_len)
                    continue
                frame = self._partial = self._read_header(flags, word & BUFFERS_MASK, body_len)
            sizes = frame.inline_sizes()
            while len(frame.parts) < len(sizes):
                frame.parts.append(self._read_part(frame, sizes[len(frame.parts)]))
            self._partial = None
            self.flags = frame.flags & ~SPECIAL
            self.shared = frame.lease is not None
            return self._finish(frame)

    def pending(self) -> bool:
        """Whether bytes of a next message are already buffered (more work is waiting).
        Notices already buffered are handled here, so they never count as a message."""
        if self._partial is not None:
            return True
        while True:
            available = self._rend - self._rpos
            if available < _PREFIX_SIZE:
                return available > 0
            word, body_len = PREFIX.unpack_from(self._rbuf, self._rpos)
            if not word >> 24 & NOTICE:
                return True
            if available < _PREFIX_SIZE + body_len:
                return False  # (the rest of a notice: no message to wait for)
            self._read_notice(body_len)

    def has_input(self) -> bool:
        """Whether a message has begun to arrive, so `recv` need not wait for the peer to send
        one: it is buffered already, or on the socket. What waits on the socket is read in
        to tell (notices among it, handled here, are not a message to wait for). Raises
        `ChannelClosed` at the channel's end."""
        if self.pending():
            return True
        if not self._poll(0):
            return False
        self._fill(self._rend - self._rpos + 1)  # (returns at once: the socket has bytes)
        return self.pending()

    def _read_notice(self, body_len: int) -> None:
        self._fill(_PREFIX_SIZE + body_len)
        start = self._rpos + _PREFIX_SIZE
        body = bytes(self._rview[start : start + body_len])
        self._rpos = start + body_len
        link = self.link
        if link is None or not body:
            return
        pairs = unpack_pairs(body[1:])
        if body[0] == NOTICE_RELEASE:
            link.released(pairs)
        elif body[0] == NOTICE_RETIRE:
            link.unmap(pairs)

    def _read_header(self, flags: int, n_buffers: int, body_len: int) -> _PartialFrame:
        if n_buffers > MAX_BUFFERS:
            raise ChannelClosed(f"corrupt frame: {n_buffers} buffers")
        if not flags & EXTENDED:
            size = _PREFIX_SIZE + LENGTH.size * n_buffers
            self._fill(size)  # nothing is consumed until the whole header is here
            lengths = struct.unpack_from(f"!{n_buffers}Q", self._rbuf, self._rpos + _PREFIX_SIZE)
            self._rpos += size
            return _PartialFrame(flags, [(n, INLINE) for n in (body_len, *lengths)])
        size = _PREFIX_SIZE + EXTENSION.size + PART.size * (n_buffers + 1)
        self._fill(size)
        at = self._rpos + _PREFIX_SIZE
        segment, generation, n_descriptors, new, _, segment_size = EXTENSION.unpack_from(
            self._rbuf, at
        )
        at += EXTENSION.size
        plan = [PART.unpack_from(self._rbuf, at + PART.size * i) for i in range(n_buffers + 1)]
        self._rpos += size
        frame = _PartialFrame(flags, plan)
        if segment != NO_SEGMENT:
            frame.lease = (segment, generation, bool(new), segment_size)
        if len(self._descriptors) < n_descriptors:
            raise ChannelClosed(
                f"corrupt frame: {n_descriptors} descriptors announced, "
                f"{len(self._descriptors)} arrived"
            )
        frame.descriptors = [self._descriptors.popleft() for _ in range(n_descriptors)]
        return frame

    def _finish(self, frame: _PartialFrame) -> Any:
        """Rebuild the message of a frame whose inline parts have all arrived."""
        descriptors = frame.descriptors
        try:
            region: memoryview | None = None
            files = descriptors
            if frame.lease is not None:
                segment, generation, new, segment_size = frame.lease
                region = self._leased(frame, segment, generation, new, segment_size)
                files = descriptors[1:] if new else descriptors
            inline = iter(frame.parts)
            parts: list[Any] = []
            for length, offset in frame.plan:
                if offset == INLINE:
                    parts.append(next(inline))
                else:
                    assert region is not None
                    parts.append(region[offset : offset + length])
            del region
            body, *buffers = parts
            return _decode(body, buffers, files)
        finally:
            for fd in descriptors:
                os.close(fd)

    def _leased(
        self, frame: _PartialFrame, segment: int, generation: int, new: bool, size: int
    ) -> memoryview:
        link = self.link
        if link is None:
            raise UndecodableMessage(
                "a frame in shared memory arrived on a channel without shared memory"
            )
        span = max(offset + n for n, offset in frame.plan if offset != INLINE)
        fd = frame.descriptors[0] if new else None
        try:
            return link.receive(segment, generation, fd, size, span)
        except (ValueError, OSError) as exc:
            raise UndecodableMessage(f"shared segment {segment}: {exc}") from exc

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
        """Read what has arrived into `view`, waiting for something if nothing has.

        The wait is a poll, never a blocking read: a read blocked on a socket is woken each
        time the peer takes bytes this process wrote on it (the socket has room to write
        again, and a blocked reader sleeps where writers do), which for a reader thread whose
        process writes calls on the same connection was a wake-up for nothing per call, on
        the other CPU. A poll for input is woken only by input (or the end). A channel that
        polls tries the read first (what it waits for is often there already); one that
        expects to sleep goes straight to the poll, or to a read that sleeps when told that
        nothing it wrote is on its way (`sleep_next_wait`)."""
        try:
            got = -1
            if self._read_asleep:
                self._read_asleep = False
                got = self._sleep(None, view)
            elif self.spin and not self._spin_skips:
                try:  # (not `contextlib.suppress`: this runs for every message)
                    got = self._receive(view, _DONTWAIT)
                except BlockingIOError:
                    pass
            if got < 0:
                self._await_input(None)
                got = self._receive(view, 0)
        except (OSError, ValueError) as exc:  # (ValueError: closed here, its descriptor is -1)
            raise ChannelClosed(str(exc)) from exc
        if not got:
            raise ChannelClosed("peer closed the channel")
        return got

    def _receive(self, view: memoryview, flags: int) -> int:
        if not self._unix:
            return self._sock.recv_into(view, 0, flags)
        got, ancillary, msg_flags, _ = self._sock.recvmsg_into([view], _ANCILLARY, flags)
        if ancillary:
            self._take_descriptors(ancillary)
        if msg_flags & _MSG_CTRUNC:
            # The kernel dropped descriptors (this process ran out of them): which frame
            # they belonged to is lost, so the channel cannot continue.
            raise ChannelClosed(
                "descriptors sent on the channel were dropped: this process has too many files open"
            )
        return got

    def _take_descriptors(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                if self._closed:
                    for fd in fds:
                        os.close(fd)
                else:
                    self._descriptors.extend(fds)

    def readable_within(self, seconds: float | None) -> bool:
        """Whether something to read (or the channel's end) reaches the socket within
        `seconds` (None: waits until it does): polls for up to `spin` seconds, when polling
        has been paying off (below), then sleeps on the socket for the rest.

        Polling pays when answers come back to back, faster than a sleeping process wakes
        up. When they do not (a server between requests, a worker between bursts), every
        poll burns a CPU the peer needs to produce the answer: on a 2-vCPU machine that
        made a served prediction slower with polling than without. So `_SPIN_MISSES` polls in
        a row that run out without anything arriving turn polling off for the next
        `_SPIN_PROBE` waits; a wait that ends within `spin` anyway, or a probe that pays,
        turns it back on. A poll whose yield handed the CPU to another process for longer
        than `_CROWDED` is crowded out: that process needs the CPU (on two vCPUs, the client
        and the server beside a polling worker), so it stops and counts as polls that ran
        out."""
        if self._poll(0):  # (cheaper than a failing non-blocking read: no exception)
            return True
        return self._await_input(seconds)

    def _poll(self, milliseconds: float | None) -> list[tuple[int, int]]:
        """Look at the socket; a look that may sleep goes through `_sleep`."""
        if self._closed:
            # Closed, by another thread (a worker being stopped): the descriptor number the
            # poller holds may be free, and the next socket opened takes it, which a poll
            # would watch instead. The channel's end is what there is to read.
            return _CLOSED
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self._sock, select.POLLIN)
        return poller.poll(milliseconds)

    def _sleep(self, milliseconds: float | None, view: memoryview | None = None) -> Any:
        """`_poll` that may sleep (with `view`: a read into it that may), during which the
        channel's descriptor stays open.

        A sleeping poll looks its descriptor number up again each time it is woken (and a
        read interrupted by a signal does when it starts again). Were the number closed by
        another thread (a worker stopped while its reader waits) and taken by the next file
        opened before the reader ran again (a busy machine), the poll would watch that file,
        for as long as nothing arrived there, instead of the socket whose end woke it. So
        `Channel.close` only shuts a socket a wait sleeps on down (which wakes the wait) and
        leaves closing it to the wait. (The two threads each write their flag before they
        read the other's, so one of them always sees the other.)"""
        self._sleeping = True
        try:
            return self._poll(milliseconds) if view is None else self._receive(view, 0)
        finally:
            self._sleeping = False
            if self._closed:
                self._sock.close()  # (closing twice is harmless)

    def _await_input(self, seconds: float | None) -> bool:
        """`readable_within` once a look found nothing there yet."""
        poll = self._poll
        start = time.perf_counter()
        if self._read_asleep:  # (told to sleep at once: `sleep_next_wait`)
            self._read_asleep = False
        elif self.spin and not self._spin_skips:
            spin_until = start + (self.spin if seconds is None else min(self.spin, seconds))
            before = start
            while True:
                os.sched_yield()
                if poll(0):
                    self._spin_misses = 0
                    return True
                now = time.perf_counter()
                if now - before > _CROWDED:
                    self._spin_misses = _SPIN_MISSES - 1  # (counts as polls that ran out)
                    break
                if now > spin_until:
                    break
                before = now
            self._spin_misses += 1
            if self._spin_misses >= _SPIN_MISSES:
                self._spin_skips = _SPIN_PROBE
        elif self._spin_skips:
            self._spin_skips -= 1
        if seconds is None:
            ready = bool(self._sleep(None))
        else:
            left = seconds - (time.perf_counter() - start)
            if left <= 0:
                return False
            ready = bool(self._sleep(left * 1000.0))
        if ready and time.perf_counter() - start <= self.spin:
            self._spin_misses = self._spin_skips = 0  # it came within the polling time
        return ready

    def sleep_next_wait(self) -> None:
        """Do not poll in the next wait for something to read: sleep at once, in the read
        itself (the sender of the frame just read waits on this process's CPU, for an answer
        that goes back on another connection).

        A read that sleeps costs one system call where a poll and then a read cost two, but
        it is woken, for nothing, each time the peer takes bytes this process wrote on the
        same socket (see `_recv_into`): right for a wait after an answer sent elsewhere, as
        a direct call's is, not in general. (What the call did write on this connection,
        printed text say, can wake the read for nothing while the peer takes it: this one
        wait only.)"""
        self._read_asleep = True

    def _close_reading(self) -> None:
        while self._descriptors:
            os.close(self._descriptors.popleft())
        partial, self._partial = self._partial, None
        if partial is not None:
            for fd in partial.descriptors:
                os.close(fd)


def _decode(body: Any, buffers: list[Any], files: list[int] | None) -> Any:
    if files:
        _files.receiving(files)
    try:
        return loads(body, buffers)
    except Exception as exc:
        raise UndecodableMessage(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if files:
            _files.receiving(None)
