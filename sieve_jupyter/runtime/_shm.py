"""Shared memory between this process and one peer: large buffers cross in one copy.

A `ShmLink` joins the channels to one peer (a worker's three connections, or the kernel's).
Each side owns the *segments* it writes: memfds, sized once (sealed against shrinking, so a
mapping can never fault) and kept for reuse. A frame whose parts are large leases a free segment,
copies its parts in (the one copy of the transfer) and names it in its header; the segment's
descriptor travels with `SCM_RIGHTS` the first time only. The peer maps each segment once and
keeps it mapped: the buffers it gives pickle are views of that mapping, so an array is rebuilt
on the shared pages without a copy, writable (the owner does not touch a leased segment).

The views of one lease hang off one *exporter* object (a ctypes array over the mapping); when
the last thing built on them is gone, it is collected and a release goes back to the owner,
which may then lease the segment again. Reuse is what makes this fast: touching a page for the
first time costs a fault (on a VM, often a trip to the hypervisor), and a segment made per
transfer costs more in faults than the copy it saves. Free segments beyond `FREE_BUDGET`, or
unused for `keep_seconds`, are retired: closed here, unmapped by the peer.

A release leaves with the next frame written to the owner, ahead of it (`take_releases`), so
the owner has the segment back before it reads that frame. Notices no frame takes (releases,
retirements) are sent by one daemon thread per process (`sieve-shm`): the code that drops the
last view can run anywhere, even inside a lock or a send, so it only queues them.
"""

from __future__ import annotations

import itertools
import mmap
import os
import select
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

try:  # (Linux; elsewhere frames keep their buffers inline)
    import ctypes
    import fcntl

    _SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
    _libc = ctypes.CDLL(None, use_errno=True)
    _mmap = _libc.mmap
    _mmap.restype = ctypes.c_void_p
    _mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    _munmap = _libc.munmap
    _munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    _MAP_FAILED = ctypes.c_void_p(-1).value
    _AVAILABLE = hasattr(os, "memfd_create") and hasattr(fcntl, "F_GET_SEALS")
except (ImportError, AttributeError, OSError):  # pragma: no cover - not Linux
    _AVAILABLE = False

__all__ = ["ALIGN", "FREE_BUDGET", "NOTICE_RELEASE", "NOTICE_RETIRE", "ShmLink", "available"]

#: parts start on this boundary in a segment (what numpy and SIMD code like)
ALIGN = 64
#: free segments kept for reuse, in bytes; beyond it the largest idle ones are retired
FREE_BUDGET = 512 << 20
#: a new segment is at least this big, and sizes round up to it (fewer, reusable segments)
_MIN_SEGMENT = 1 << 20
#: seconds an unused free segment is kept before it is retired (SIEVE_SHM_KEEP_SECONDS)
_KEEP_SECONDS = 10.0
#: copies at least this big run without the GIL (ctypes.memmove releases it)
_NOGIL_COPY = 1 << 20
#: notice kinds: the receiver is done with leases (to the owner); segments retired (to the peer)
NOTICE_RELEASE = 1
NOTICE_RETIRE = 2
_PAIR = struct.Struct("!II")
_link_numbers = itertools.count(1)


def available() -> bool:
    """Whether this process can create shared segments (memfds, Linux)."""
    return _AVAILABLE


class _Mapping:
    """A segment mapped into this process (shared, read-write), unmapped when this object is
    collected: every view of it keeps it alive, so memory is never unmapped under a view.

    Mapped with libc's `mmap` rather than the `mmap` module, which keeps a duplicate of the
    descriptor open for as long as the mapping lives (a descriptor per live array)."""

    __slots__ = ("address", "size")

    def __init__(self, fd: int, size: int) -> None:
        address = _mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            error = ctypes.get_errno()
            raise OSError(error, f"mmap of a shared segment failed: {os.strerror(error)}")
        self.address: int = address
        self.size = size

    def view(self, span: int) -> memoryview:
        """A writable view of the first `span` bytes whose exporter (and so this mapping)
        lives as long as anything built on it."""
        exporter = _exporter_type(span).from_address(self.address)
        exporter.mapping = self
        return memoryview(exporter).cast("B")[:span]

    def __del__(self) -> None:
        try:
            _munmap(self.address, self.size)
        except TypeError:  # pragma: no cover - interpreter shutdown took ctypes first
            pass


#: ctypes array types by size class (a type per exact size would pile up in ctypes' cache)
_EXPORTER_TYPES: dict[int, type[Any]] = {}


def _exporter_type(span: int) -> type[Any]:
    size = 1 << max(12, (max(span, 1) - 1).bit_length())
    cls = _EXPORTER_TYPES.get(size)
    if cls is None:
        cls = _EXPORTER_TYPES[size] = type("SharedRegion", (ctypes.c_char * size,), {})
    return cls


class _Segment:
    """A segment this process owns. Its descriptor is closed once the peer has it (the
    mappings hold the memory), so a segment costs no descriptor in steady state."""

    __slots__ = (
        "busy",
        "fd",
        "generation",
        "id",
        "idle_since",
        "mapping",
        "size",
        "view",
        "writing",
    )

    def __init__(self, segment_id: int, size: int, name: str) -> None:
        fd = os.memfd_create(f"{name}-{segment_id}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)  # its size is fixed: no SIGBUS, ever
            self.mapping = _Mapping(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self.id = segment_id
        self.fd: int | None = fd
        self.size = size
        self.view = self.mapping.view(size)
        self.generation = 0
        self.busy = False
        #: a writer holds its lease and has not sent (or given back) its frame yet: the link
        #: closing meanwhile leaves the segment to that writer (see `ShmLink.close`)
        self.writing = False
        self.idle_since = time.monotonic()

    @property
    def shared(self) -> bool:
        """The peer has the segment (its descriptor went with an earlier frame)."""
        return self.fd is None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.view.release()


class Lease:
    """A segment leased for one frame: where its parts go, and whether its descriptor must
    travel with the frame."""

    __slots__ = ("new", "segment")

    def __init__(self, segment: _Segment) -> None:
        self.segment = segment
        self.new = not segment.shared

    @property
    def id(self) -> int:
        return self.segment.id

    @property
    def generation(self) -> int:
        return self.segment.generation

    @property
    def size(self) -> int:
        return self.segment.size

    @property
    def fd(self) -> int:
        fd = self.segment.fd
        assert fd is not None, "the peer has this segment already"
        return fd

    def put(self, offset: int, data: memoryview) -> None:
        """Copy `data` into the segment at `offset` (the transfer's one copy). A large copy
        from writable memory runs without the GIL, so the process's other threads go on."""
        n = data.nbytes
        if n >= _NOGIL_COPY and not data.readonly and data.c_contiguous:
            source = ctypes.c_char.from_buffer(data)
            ctypes.memmove(self.segment.mapping.address + offset, ctypes.addressof(source), n)
            del source
        else:
            self.segment.view[offset : offset + n] = data


class ShmLink:
    """Shared memory with one peer, shared by every channel to it (see the module docstring).

    `notify` is set by whoever joins the channels: it sends a notice ``(kind, pairs)`` to the
    peer on a connection the peer always reads (raising `ConnectionError` once it is gone).
    """

    def __init__(self, *, keep_seconds: float | None = None) -> None:
        if keep_seconds is None:
            keep_seconds = float(os.environ.get("SIEVE_SHM_KEEP_SECONDS", _KEEP_SECONDS))
        self.keep_seconds = keep_seconds
        #: names this side's segments (``/proc/<pid>/maps`` shows ``memfd:<name>-<n>``)
        self.name = f"sieve-{os.getpid()}-{next(_link_numbers)}"
        self.notify: Callable[[int, list[tuple[int, int]]], None] | None = None
        self._lock = threading.Lock()
        self._owned: dict[int, _Segment] = {}
        self._next_id = 1
        self._mapped: dict[int, _Mapping] = {}
        #: leases of the peer's segments something here still uses ``(segment, generation)``
        self._held: set[tuple[int, int]] = set()
        #: leases of the peer's segments we are done with, not yet sent, and our segments
        #: retired (deques: appended from finalizers, which must not take a lock). Releases
        #: leave with the next frame to the peer (`take_releases`) or by the notice thread.
        self.releases: deque[tuple[int, int]] = deque()
        self._retired: deque[tuple[int, int]] = deque()
        self._closed = False
        _notices.register(self)

    # -- the segments we own -----------------------------------------------------------------

    def lease(self, nbytes: int) -> Lease:
        """A free segment of at least `nbytes` for one frame (made if none fits).

        Raises:
            OSError: no segment could be made (out of memory or descriptors): send inline.
        """
        with self._lock:
            if self._closed:
                raise OSError("shared memory link closed")
            best: _Segment | None = None
            largest = max(4 * nbytes, _MIN_SEGMENT)  # (a far bigger one waits for its size)
            for segment in self._owned.values():
                fits = not segment.busy and nbytes <= segment.size <= largest
                if fits and (best is None or segment.size < best.size):
                    best = segment
            if best is not None:
                best.busy = best.writing = True
                best.generation = (best.generation + 1) & 0xFFFFFFFF
                return Lease(best)
            segment_id = self._next_id
            self._next_id += 1
        segment = _Segment(segment_id, -(-nbytes // _MIN_SEGMENT) * _MIN_SEGMENT, self.name)
        segment.busy = segment.writing = True
        with self._lock:
            if self._closed:
                segment.close()
                raise OSError("shared memory link closed")
            self._owned[segment_id] = segment
        return Lease(segment)

    def sent(self, lease: Lease) -> None:
        """The frame of `lease` went out: the peer has the segment now, so its descriptor is
        not needed any more (the mappings keep the memory)."""
        segment = lease.segment
        with self._lock:
            segment.writing = False
            if segment.fd is not None:
                os.close(segment.fd)
                segment.fd = None
            if self._closed:  # (the peer went while this frame was written)
                segment.close()

    def give_back(self, lease: Lease) -> None:
        """The frame of `lease` never reached the peer: the segment is free again."""
        with self._lock:
            lease.segment.writing = False
            if self._closed:
                lease.segment.close()
                return
        self._free([(lease.id, lease.generation)])

    def released(self, pairs: list[tuple[int, int]]) -> None:
        """The peer is done with these leases ``(segment, generation)`` (a notice arrived)."""
        self._free(pairs)

    def _free(self, pairs: list[tuple[int, int]]) -> None:
        now = time.monotonic()
        with self._lock:
            for segment_id, generation in pairs:
                segment = self._owned.get(segment_id)
                if segment is not None and segment.generation == generation:
                    segment.busy = False
                    segment.idle_since = now
            free = sorted((s for s in self._owned.values() if not s.busy), key=lambda s: -s.size)
            total = sum(s.size for s in free)
            over = []
            for segment in free:
                if total <= FREE_BUDGET:
                    break
                over.append(segment)
                total -= segment.size
            self._retire_locked(over)
        _notices.wake()  # (to retire the freed ones once they have been idle long enough)

    def retire_idle(self, now: float) -> float | None:
        """Retire free segments unused for `keep_seconds`. Returns when the next one would be
        due, or None if no segment is free."""
        with self._lock:
            idle = [
                s
                for s in self._owned.values()
                if not s.busy and now - s.idle_since >= self.keep_seconds
            ]
            self._retire_locked(idle)
            waiting = [s.idle_since + self.keep_seconds for s in self._owned.values() if not s.busy]
        return min(waiting) if waiting else None

    def _retire_locked(self, segments: list[_Segment]) -> None:
        for segment in segments:
            if self._owned.pop(segment.id, None) is None:
                continue
            if segment.shared:
                self._retired.append((segment.id, 0))
            segment.close()
        if segments:
            _notices.wake()

    # -- the peer's segments -----------------------------------------------------------------

    def receive(
        self, segment_id: int, generation: int, fd: int | None, size: int, span: int
    ) -> memoryview:
        """The first `span` bytes of the peer's segment, leased to this frame, as a writable
        view (mapping the segment first if `fd` is given: a segment new to us). When the last
        view of it (and everything built on it) is gone, the lease goes back to the peer.

        Raises:
            ValueError: the segment is unknown, too small or not sealed (the frame is dropped).
            OSError: it could not be mapped.
        """
        try:
            if fd is not None:
                if not fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK:
                    raise ValueError("it is not sealed against shrinking")
                if os.fstat(fd).st_size < size:
                    raise ValueError("it is smaller than announced")
                mapping = _Mapping(fd, size)
                with self._lock:
                    self._mapped[segment_id] = mapping
            else:
                with self._lock:
                    known = self._mapped.get(segment_id)
                if known is None:
                    raise ValueError("it is unknown here")
                mapping = known
            if span > mapping.size:
                raise ValueError("the frame reaches past its end")
        except BaseException:
            self._lease_done(segment_id, generation)  # (nothing here will use it)
            raise
        view = mapping.view(span)
        self._held.add((segment_id, generation))
        finalizer = weakref.finalize(view.obj, self._lease_done, segment_id, generation)
        finalizer.atexit = False
        return view

    def _lease_done(self, segment_id: int, generation: int) -> None:
        # (runs wherever the last view was dropped: no locks here)
        self._held.discard((segment_id, generation))
        if self._closed:
            return  # (the peer is gone, and its segments with it)
        self.releases.append((segment_id, generation))
        _notices.wake()

    def unmap(self, pairs: list[tuple[int, int]]) -> None:
        """The peer retired these segments (a notice arrived). Views still alive keep their
        mapping until they go."""
        with self._lock:
            for segment_id, _ in pairs:
                self._mapped.pop(segment_id, None)

    # -- notices and lifetime ----------------------------------------------------------------

    def take_releases(self) -> list[tuple[int, int]]:
        """Take the releases not yet sent, for a frame about to go to the peer to carry ahead
        of itself: the peer then frees those segments before it reads the frame. So a call
        sent after the last result was dropped finds that result's segment free for its own,
        however late the notice thread would have run (on a loaded machine, often after the
        next result had made a new segment)."""
        return [] if self._closed else _drain(self.releases)

    def send_notices(self) -> None:
        """Send the pending releases and retirements to the peer (the notice thread)."""
        notify = self.notify
        for kind, pending in ((NOTICE_RELEASE, self.releases), (NOTICE_RETIRE, self._retired)):
            pairs = _drain(pending)
            if pairs and notify is not None and not self._closed:
                try:
                    notify(kind, pairs)
                except (ConnectionError, OSError):
                    pass  # the peer is gone: everything is freed with the connection

    def close(self) -> None:
        """Free the segments this side owns (the peer is gone, or going). The peer's segments
        stay mapped as long as something here still uses their memory."""
        with self._lock:
            self._closed = True
            # A segment a writer still holds is closed by that writer (`sent`, `give_back`):
            # closing its descriptor here could close another file that took its number.
            owned = [s for s in self._owned.values() if not s.writing]
            self._owned = {}
            self._mapped.clear()
            self._held.clear()
            for segment in owned:
                segment.close()
        self.releases.clear()
        self._retired.clear()

    def counts(self) -> dict[str, int]:
        """How many segments this side owns (busy, free), how many of the peer's it maps and
        how many leases of them it still holds (for tests and display)."""
        with self._lock:
            busy = sum(1 for s in self._owned.values() if s.busy)
            return {
                "busy": busy,
                "free": len(self._owned) - busy,
                "mapped": len(self._mapped),
                "held": len(self._held),
            }


def _drain(pending: deque[tuple[int, int]]) -> list[tuple[int, int]]:
    """Everything in `pending` (which another thread may drain at the same time)."""
    pairs = []
    try:
        while pending:
            pairs.append(pending.popleft())
    except IndexError:  # (the other one took the last)
        pass
    return pairs


def pack_pairs(pairs: list[tuple[int, int]]) -> bytes:
    return b"".join(_PAIR.pack(a, b) for a, b in pairs)


def unpack_pairs(data: bytes | bytearray | memoryview) -> list[tuple[int, int]]:
    return [_PAIR.unpack_from(data, i) for i in range(0, len(data) - _PAIR.size + 1, _PAIR.size)]


class _Notices:
    """The process's notice thread: sends releases and retirements for every link, and
    retires segments left idle. Woken through a pipe, which is safe from anywhere."""

    def __init__(self) -> None:
        self._links: weakref.WeakSet[ShmLink] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pipe: tuple[int, int] | None = None
        self._pid = 0

    def register(self, link: ShmLink) -> None:
        with self._lock:
            self._links.add(link)
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                self._pipe = (read, write)
                self._thread = threading.Thread(
                    target=self._run, args=(read,), name="sieve-shm", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        pipe = self._pipe
        if pipe is not None:
            try:
                os.write(pipe[1], b"\0")
            except OSError:  # full (a wake-up is pending anyway) or closed
                pass

    def _run(self, read: int) -> None:
        timeout: float | None = None
        while True:
            select.select([read], [], [], timeout)
            try:
                while os.read(read, 4096):
                    pass
            except BlockingIOError:
                pass
            now = time.monotonic()
            due: list[float] = []
            for link in list(self._links):
                link.send_notices()
                next_due = link.retire_idle(now)
                link.send_notices()
                if next_due is not None:
                    due.append(next_due)
            timeout = max(0.0, min(due) - now) + 0.01 if due else None


_notices = _Notices()
