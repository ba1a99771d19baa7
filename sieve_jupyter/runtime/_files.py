"""How a `sieve.File` crosses to a process that does not see this one's files.

Between processes that share a filesystem view (a local worker and its kernel), a File travels
as its path or URL, as it always did. A channel to a process that does not (a container, another
machine) pickles with `sending_content()` in effect, and each File then carries its content: a
small file inside the pickle, a larger one as an open descriptor passed with `SCM_RIGHTS`
(nothing is read or copied by the sender; the receiver copies it in the kernel with
`sendfile`). Where no descriptor can go along (Ray carries the pickles between machines),
`carrying_content()` puts every content in the pickle, a large one as an out-of-band buffer.
The receiver keeps contents in a per-process store keyed by their SHA-256, so a file it already
has is not copied again (the sender hashes each file version once); a file there that user code
changed is left as it is, and the content arrives again beside it. A File made from a URL and
never read travels as the URL and is fetched lazily where it is read (into the same store, once
per URL).

The store is a private temporary folder (``sieve-files-<pid>-*``), removed at exit; one left by
a process that was killed is removed by the next process that makes its own. While the process
lives, a content stays as long as a File points at it; once none does, it is kept in case it
arrives again, up to `SPARE_BYTES` of such contents, beyond which the least recently used go.
"""

from __future__ import annotations

import atexit
import collections
import functools
import hashlib
import os
import pickle
import secrets
import shutil
import stat
import tempfile
import threading
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable
from typing import Any

__all__ = [
    "INLINE_FILE",
    "MAX_FILE_DESCRIPTORS",
    "FileStore",
    "Forget",
    "PeerContents",
    "carry_content_by_default",
    "carrying_content",
    "for_peer",
    "digest_of",
    "keep_originals",
    "filesystem_id",
    "receiving",
    "reduce_file",
    "sending_content",
    "store",
]

#: files up to this size travel inside the pickle; larger ones as a descriptor
INLINE_FILE = 64 * 1024
#: descriptors one frame may carry for files; beyond, contents are read into buffers (which go
#: through shared memory)
MAX_FILE_DESCRIPTORS = 64
_DIGEST_CACHE = 4096
#: bytes of received contents no File points at any more that a store keeps, in case the same
#: content arrives again
SPARE_BYTES = 1 << 30

_state = threading.local()


# -- which processes share files ---------------------------------------------------------------


@functools.cache
def filesystem_id() -> str:
    """Identifies this process's view of the filesystem: equal in two processes exactly when a
    path means the same file in both (same machine boot, same mount namespace)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            machine = fh.read().strip()
    except OSError:
        import socket

        machine = socket.gethostname()
    try:
        mounts = os.readlink("/proc/self/ns/mnt")
    except OSError:
        root = os.stat("/")
        mounts = f"{root.st_dev}:{root.st_ino}"
    return f"{machine}/{mounts}"


# -- sending ---------------------------------------------------------------------------------


class Outgoing:
    """The files whose descriptors a frame being pickled will carry, in order (`limit` at
    most: the contents of the others go inside the pickle). `held`: contents (SHA-256) the
    receiver is known to hold, which go as a reference to its store (collected in
    `referenced`); `carried` collects the contents put inside the pickle, with their sizes."""

    __slots__ = ("carried", "held", "limit", "paths", "referenced")

    def __init__(
        self, limit: int = MAX_FILE_DESCRIPTORS, held: set[str] | frozenset[str] = frozenset()
    ) -> None:
        self.limit = limit
        self.paths: list[tuple[str, int]] = []
        self.held = held
        self.carried: dict[str, int] = {}
        self.referenced: list[str] = []

    def add(self, path: str, size: int) -> int:
        for index, (known, _) in enumerate(self.paths):
            if known == path:
                return index
        self.paths.append((path, size))
        return len(self.paths) - 1


def sending_content(outgoing: Outgoing | None) -> None:
    """Make Files pickled on this thread carry their content (`outgoing` collects the files to
    pass as descriptors), or, with None, travel as this process does by default again."""
    if outgoing is None:
        _state.__dict__.pop("outgoing", None)
    else:
        _state.outgoing = outgoing


#: every content inside the pickle (no descriptor can go along); shared: it never collects
_INLINE_ONLY = Outgoing(limit=0)
#: what a thread outside `sending_content` and `carrying_content` pickles Files with
_by_default: Outgoing | None = None
_UNSET = object()


class carrying_content:  # noqa: N801 - used as a context manager, named like one
    """While in effect (and `carry`), Files pickled on this thread carry their whole content
    inside the pickle: for pickles that something else carries to a process that does not share
    this one's files (Ray's calls to an actor on another machine). A large content is an
    out-of-band buffer, which Ray moves through its object store without a copy. (A class, not
    a generator: it wraps every call to a Ray worker.)"""

    __slots__ = ("_before", "_carry", "_outgoing")

    def __init__(self, carry: bool = True, outgoing: Outgoing | None = None) -> None:
        self._carry = carry
        self._outgoing = outgoing or _INLINE_ONLY  # (one with `limit=0`: see `for_peer`)
        self._before: Any = _UNSET

    def __enter__(self) -> None:
        if self._carry:
            self._before = getattr(_state, "outgoing", _UNSET)
            _state.outgoing = self._outgoing

    def __exit__(self, *exc_info: object) -> None:
        if not self._carry:
            return
        if self._before is _UNSET:
            del _state.outgoing
        else:
            _state.outgoing = self._before


def for_peer(held: set[str]) -> Outgoing:
    """What to pickle one message for a peer that no descriptor reaches with (`carrying_content`):
    contents go inside the pickle, but those in `held` (the peer confirmed it has them) as a
    reference to its store; `carried` then lists the contents that went."""
    return Outgoing(limit=0, held=held)


#: contents a peer keeping originals is left holding for this process at most (`PeerContents`)
PEER_CONTENTS = 10_000


class PeerContents:
    """The contents this process sent to a peer that keeps them (`keep_originals`: a Ray worker
    on another machine), and those it may refer to instead of sending them again (`held`: a
    call that carried them ran there). Bounded like a store's spare contents: beyond
    `SPARE_BYTES` (or `PEER_CONTENTS` contents), the least recently sent or referred to are
    forgotten here, and the peer is told to drop them by the next call (`take_forget`), which
    the peer unpickles after every message that may still refer to them. Thread-safe."""

    def __init__(self, limit_bytes: int | None = None, limit_count: int | None = None) -> None:
        self.limit_bytes = SPARE_BYTES if limit_bytes is None else limit_bytes
        self.limit_count = PEER_CONTENTS if limit_count is None else limit_count
        self.held: set[str] = set()
        self._lock = threading.Lock()
        #: every content sent (digest -> size), the least recently used first
        self._sent: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._total = 0
        self._forgotten: list[str] = []

    def outgoing(self) -> Outgoing:
        """What to pickle a message to the peer with."""
        return for_peer(self.held)

    def sent(self, outgoing: Outgoing) -> None:
        """A message pickled with `outgoing` is going to the peer: what it carried and what it
        referred to are the most recently used now; the least recently used beyond the budget
        are forgotten."""
        with self._lock:
            known = self._sent
            for digest, size in outgoing.carried.items():
                self._total += size - known.pop(digest, 0)
                known[digest] = size
            for digest in outgoing.referenced:
                if digest in known:
                    known.move_to_end(digest)
            while known and (self._total > self.limit_bytes or len(known) > self.limit_count):
                digest, size = known.popitem(last=False)
                self._total -= size
                self.held.discard(digest)
                self._forgotten.append(digest)

    def confirm(self, digests: list[str]) -> None:
        """A call that carried `digests` ran: the peer holds them (unless forgotten since)."""
        with self._lock:
            self.held.update(d for d in digests if d in self._sent)

    def take_forget(self) -> Forget | None:
        """What the next call tells the peer to drop (None: nothing)."""
        with self._lock:
            if not self._forgotten:
                return None
            forget, self._forgotten = Forget(self._forgotten), []
        return forget

    def forget_again(self, forget: Forget) -> None:
        """The call that carried `forget` was never unpickled (cancelled before it ran): the
        next one tells the peer."""
        with self._lock:
            self._forgotten.extend(forget.digests)


class Forget:
    """Placed in a message before its values: unpickling it makes the receiving store drop the
    originals of `digests` (its sender no longer refers to them), before any content that
    message carries arrives (a pickle is rebuilt in order)."""

    __slots__ = ("digests",)

    def __init__(self, digests: list[str]) -> None:
        self.digests = digests

    def __reduce__(self) -> tuple[Any, ...]:
        return (_forget_originals, (self.digests,))


def _forget_originals(digests: list[str]) -> None:
    store().forget_originals(digests)


def carry_content_by_default(carry: bool) -> None:
    """Make every thread of this process pickle Files with their content unless told otherwise
    (a Ray actor whose every pickle goes to a kernel that does not see its files: its answers
    are pickled by Ray, after the call returned, and its side messages by a thread of its own)."""
    global _by_default
    _by_default = _INLINE_ONLY if carry else None


def reduce_file(file: Any) -> tuple[Any, ...]:
    """`File.__reduce_ex__`: by reference, or with its content when a channel to a process
    that does not share files is pickling (see `sending_content`).

    Raises:
        ValueError: the content must travel but the file cannot be read (naming it and why).
    """
    cls = type(file)
    outgoing: Outgoing | None = getattr(_state, "outgoing", _by_default)
    path = file._local
    if outgoing is None or path is None:
        return (_by_reference, (cls, file._source))
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ValueError(
            f"{file!r}: its content cannot be sent ({exc.strerror or exc}: {path}). Fix: pass "
            "a file that exists when the job is sent."
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(
            f"{file!r}: {path} is not a regular file, and only files' contents can be sent to "
            "another machine or container. Fix: pass each file, or an archive of the folder."
        )
    digest = digest_of(path, info)
    name = os.path.basename(path) or "file"
    if digest in outgoing.held:
        outgoing.referenced.append(digest)
        return (_held, (cls, file.url, name, digest, info.st_size))
    if info.st_size <= INLINE_FILE or len(outgoing.paths) >= outgoing.limit:
        data = bytearray(info.st_size)
        with open(path, "rb") as fh:
            fh.readinto(data)
        content: Any = bytes(data) if info.st_size <= INLINE_FILE else pickle.PickleBuffer(data)
        if outgoing is not _INLINE_ONLY:  # (the shared one collects nothing)
            outgoing.carried[digest] = info.st_size
        return (_with_content, (cls, file.url, name, digest, content))
    index = outgoing.add(path, info.st_size)
    return (_with_descriptor, (cls, file.url, name, digest, info.st_size, index))


#: (st_dev, st_ino) -> (size, mtime_ns, ctime_ns, digest), oldest first
_digests: collections.OrderedDict[tuple[int, int], tuple[int, int, int, str]] = (
    collections.OrderedDict()
)
_digests_lock = threading.Lock()


def digest_of(path: str, info: os.stat_result | None = None) -> str:
    """The SHA-256 of a file's content (hex), computed once per version of the file (its
    inode, size and change times)."""
    info = info or os.stat(path)
    key = (info.st_dev, info.st_ino)
    version = (info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    with _digests_lock:
        known = _digests.get(key)
    if known is not None and known[:3] == version:
        return known[3]
    with open(path, "rb") as fh:
        digest = _sha256(fh)
    _remember_digest(key, version, digest)
    return digest


def _remember_digest(key: tuple[int, int], version: tuple[int, int, int], digest: str) -> None:
    with _digests_lock:
        _digests[key] = (*version, digest)
        _digests.move_to_end(key)
        while len(_digests) > _DIGEST_CACHE:
            _digests.popitem(last=False)


def _sha256(fh: Any) -> str:
    file_digest = getattr(hashlib, "file_digest", None)  # (Python 3.11+)
    if file_digest is not None:
        return str(file_digest(fh, "sha256").hexdigest())
    digest = hashlib.sha256()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    while True:
        got = fh.readinto(buffer)
        if not got:
            return digest.hexdigest()
        digest.update(view[:got])


# -- receiving -------------------------------------------------------------------------------


def receiving(descriptors: list[int] | None) -> None:
    """The file descriptors of the frame being unpickled on this thread (None once done)."""
    _state.incoming = descriptors


def _by_reference(cls: type[Any], source: str) -> Any:
    return cls(source)


def _with_content(cls: type[Any], url: str | None, name: str, digest: str, data: Any) -> Any:
    file = _new_file(cls)
    with memoryview(data) as view:
        path = store().put(digest, name, view.nbytes, lambda out: _write_all(out, view), file)
    return _received(file, url, path)


def _held(cls: type[Any], url: str | None, name: str, digest: str, size: int) -> Any:
    """A File whose content this process received before (its sender was told so)."""

    def missing(out: int) -> None:
        raise ValueError(
            f"the content of file {name!r} ({digest[:12]}) was sent as one this process "
            "holds, and it does not: its store was removed. Fix: send the file again (a new "
            "worker gets contents anew)."
        )

    file = _new_file(cls)
    return _received(file, url, store().put(digest, name, size, missing, file, reference=True))


def _with_descriptor(
    cls: type[Any], url: str | None, name: str, digest: str, size: int, index: int
) -> Any:
    descriptors: list[int] | None = getattr(_state, "incoming", None)
    if descriptors is None or index >= len(descriptors):
        raise ValueError(
            f"the content of file {name!r} travelled as a descriptor that did not arrive "
            "(a File sent with its content can only be unpickled by the channel receiving it)"
        )
    fd = descriptors[index]
    file = _new_file(cls)
    path = store().put(digest, name, size, lambda out: _copy_descriptor(fd, out, size), file)
    return _received(file, url, path)


def _new_file(cls: type[Any]) -> Any:
    """A File not filled in yet (it owns its content in the store from the start)."""
    file = object.__new__(cls)
    file._source = file._local = None
    return file


def _received(file: Any, url: str | None, path: str) -> Any:
    file._source = url if url is not None else path
    file._local = path
    return file


def _write_all(out: int, view: memoryview) -> None:
    view = view.cast("B")
    while view.nbytes:
        view = view[os.write(out, view) :]


def _copy_file(path: str, out: int) -> None:
    source = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _copy_descriptor(source, out, os.fstat(source).st_size)
    finally:
        os.close(source)


def _copy_descriptor(source: int, out: int, size: int) -> None:
    """Copy `size` bytes of the open file `source` from its start (in the kernel: no trip
    through this process's memory)."""
    offset = 0
    try:
        while offset < size:
            sent = os.sendfile(out, source, offset, size - offset)
            if not sent:
                break
            offset += sent
    except OSError:  # (a descriptor sendfile cannot read from): copy through a buffer
        os.lseek(out, 0, os.SEEK_SET)
        os.ftruncate(out, 0)
        offset = 0
        while offset < size:
            chunk = os.pread(source, min(1 << 20, size - offset), offset)
            if not chunk:
                break
            _write_all(out, memoryview(chunk))
            offset += len(chunk)


class _Stored:
    """A file the store wrote: its size and change time then (one that differs since was
    changed by user code; None while it is being written), how many hold it (live Files, and
    a thread writing it), and whether it is an original (never removed while the process
    lives: see `keep_originals`)."""

    __slots__ = ("original", "owners", "written")

    def __init__(self, written: tuple[int, int] | None, original: bool) -> None:
        self.written = written
        self.owners = 0
        self.original = original


class FileStore:
    """This process's store of received (and downloaded) file contents: ``<root>/<key>/<name>``.

    Contents are keyed by their SHA-256 (downloads by their URL's), so one that arrived before
    is reused: linked under a new name if it came under another one. Each path handed out
    belongs to the File it was handed to (`put`'s `owner`); once no live File owns it, it is
    *spare*, and spare contents beyond `spare_bytes` go, least recently used first, when the
    next content arrives. Thread-safe: concurrent arrivals of the same content each write a
    private part file and rename it into place; what the store knows is kept under its lock.
    """

    def __init__(self, parent: str | None = None, spare_bytes: int | None = None) -> None:
        self._parent = parent
        self._root: str | None = None
        self._lock = threading.Lock()
        #: every file this store wrote (or linked) and still has
        self._stored: dict[str, _Stored] = {}
        #: the stored files no File owns: path -> size, the longest unowned first
        self._spare: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._spare_total = 0
        #: paths whose owner went away (appended by finalizers, which must not take the lock)
        self._released: collections.deque[str] = collections.deque()
        self.spare_bytes = SPARE_BYTES if spare_bytes is None else spare_bytes
        #: keep each content apart from the files handed out (see `keep_originals`)
        self.keeps_originals = False

    @property
    def root(self) -> str:
        if self._root is None:
            with self._lock:
                if self._root is None:
                    parent = self._parent or tempfile.gettempdir()
                    _remove_stale_stores(parent)
                    self._root = tempfile.mkdtemp(prefix=f"sieve-files-{os.getpid()}-", dir=parent)
                    atexit.register(self.remove)
        return self._root

    def put(
        self,
        key: str,
        name: str,
        size: int | None,
        write: Callable[[int], None],
        owner: Any = None,
        *,
        reference: bool = False,
    ) -> str:
        """The path of content `key` under `name`, calling ``write(fd)`` to fill it only if
        the store does not have it yet (`size` None: not known in advance). The path is kept
        while `owner` (the File it is for) lives. A store that keeps originals writes the
        content once, beside, and hands out copies of it: a content that arrives (not as a
        `reference` to one the store holds) is kept as an original again if it was dropped.

        Raises:
            ValueError: `write` produced other than `size` bytes (the content was cut short).
        """
        name = os.path.basename(name) or "file"
        folder = os.path.join(self.root, key)
        with self._lock:
            self._trim()
            target = self._place(folder, name)
            if self._intact(target, size) and (reference or not self._lacks_original(folder, size)):
                self._own(target, owner)
                return target
            self._reserve(target)  # (held while it is written: trimming leaves it alone)
        try:
            part = self._fill(folder, target, name, size, write)
        except BaseException:
            with self._lock:
                self._release(target)
            raise
        with self._lock:
            try:
                self._commit(part, target, size)
                self._own(target, owner)
            finally:
                self._release(target)  # (the writer's hold: `owner` holds it now)
        return target

    def _lacks_original(self, folder: str, size: int | None) -> bool:
        return self.keeps_originals and not self._intact(folder + ".original", size)

    def _fill(
        self, folder: str, target: str, name: str, size: int | None, write: Callable[[int], None]
    ) -> str:
        """A part file holding the content: a copy of the original, a link to the same
        content under another name, or what ``write(fd)`` wrote."""
        if self.keeps_originals:
            original = folder + ".original"  # (beside the folder: no file name can clash)
            with self._lock:
                have_original = self._intact(original, size)
            if not have_original:
                part = self._write(self.root, name, size, write)
                with self._lock:
                    self._stored.setdefault(original, _Stored(None, True))
                    self._commit(part, original, size)
            return self._write(folder, name, size, functools.partial(_copy_file, original))
        for sibling in _listdir(folder):  # the same content, arrived under another name
            other = os.path.join(folder, sibling)
            with self._lock:
                if sibling.startswith(".") or other == target or not self._intact(other, size):
                    continue
            part = os.path.join(folder, f".part-{secrets.token_hex(8)}")
            try:
                os.link(other, part)
                return part
            except OSError:  # (trimmed meanwhile)
                break
        return self._write(folder, name, size, write)

    def _write(self, folder: str, name: str, size: int | None, write: Callable[[int], None]) -> str:
        """A new part file in `folder` filled with ``write(fd)``.

        Raises:
            ValueError: `write` produced other than `size` bytes.
        """
        part, out = self._part(folder)
        try:
            try:
                write(out)
                written = os.fstat(out).st_size
            finally:
                os.close(out)
            if size is not None and written != size:
                raise ValueError(
                    f"file {name!r}: {written} bytes arrived of {size} (was it changed or "
                    "truncated while it was being sent?)"
                )
        except BaseException:
            _unlink(part)
            raise
        return part

    def _commit(self, part: str, path: str, size: int | None) -> None:
        """Rename the filled `part` to `path`, unless another arrival of the same content got
        there first (then `part` goes). Lock held: what others see of `path` changes at once."""
        stored = self._stored[path]
        if stored.written is not None and self._intact(path, size):
            _unlink(part)
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.replace(part, path)
        except BaseException:
            _unlink(part)
            raise
        info = os.stat(path)
        stored.written = (info.st_size, info.st_mtime_ns)

    @staticmethod
    def _part(folder: str) -> tuple[str, int]:
        """A new private part file in `folder` (made if missing, again if trimming removed it
        meanwhile), open for writing."""
        for attempt in range(3):
            part = os.path.join(folder, f".part-{secrets.token_hex(8)}")
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                return part, os.open(part, flags, 0o600)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                os.makedirs(folder, exist_ok=True)
        raise AssertionError("unreachable")

    def _place(self, folder: str, name: str) -> str:
        """Where a content arriving under `name` goes: its folder, unless the file there was
        changed since this store wrote it (user code changed a File it got: the change is
        kept, and the arrival goes to a numbered folder beside it). Lock held."""
        target = os.path.join(folder, name)
        number = 0
        while self._changed(target):
            number += 1
            target = os.path.join(folder, str(number), name)
        return target

    def _changed(self, path: str) -> bool:
        stored = self._stored.get(path)
        if stored is None or stored.written is None:
            return False
        try:
            info = os.stat(path)
        except OSError:
            return False  # (removed: the place is free again)
        return (info.st_size, info.st_mtime_ns) != stored.written

    def _intact(self, path: str, size: int | None) -> bool:
        try:
            info = os.stat(path)
        except OSError:
            return False
        stored = self._stored.get(path)
        written = None if stored is None else stored.written
        return (
            stat.S_ISREG(info.st_mode)  # (not the numbered folder of a changed file's content)
            and (size is None or info.st_size == size)
            and (written is None or written == (info.st_size, info.st_mtime_ns))
        )

    # -- what is kept (lock held) ------------------------------------------------------------

    def _reserve(self, path: str) -> None:
        """Hold `path` for the thread about to write it."""
        stored = self._stored.get(path)
        if stored is None:
            stored = self._stored[path] = _Stored(None, False)
        stored.owners += 1
        self._unspare(path)

    def _own(self, path: str, owner: Any) -> None:
        """`owner` (a File) holds `path` until it goes away."""
        if owner is None:
            return
        stored = self._stored.get(path)
        if stored is None:  # (there, but not written by this store: user code put it there)
            info = os.stat(path)
            stored = self._stored[path] = _Stored((info.st_size, info.st_mtime_ns), False)
        if stored.original:
            return
        stored.owners += 1
        self._unspare(path)
        weakref.finalize(owner, self._released.append, path).atexit = False

    def _release(self, path: str) -> None:
        """One holder of `path` is done with it: with none left, it is spare (or forgotten,
        if it was never written)."""
        stored = self._stored.get(path)
        if stored is None or stored.owners == 0:
            return
        stored.owners -= 1
        if stored.owners:
            return
        if stored.written is None:
            del self._stored[path]
        else:
            self._spare[path] = stored.written[0]
            self._spare_total += stored.written[0]

    def _unspare(self, path: str) -> None:
        size = self._spare.pop(path, None)
        if size is not None:
            self._spare_total -= size

    def _trim(self) -> None:
        """Count the Files that went away, then remove the longest unowned contents until the
        spare ones fit in `spare_bytes`."""
        released = self._released
        while released:
            self._release(released.popleft())
        while self._spare_total > self.spare_bytes and self._spare:
            path, size = self._spare.popitem(last=False)
            self._spare_total -= size
            del self._stored[path]
            try:
                os.unlink(path)
            except OSError:
                continue
            folder = os.path.dirname(path)
            while folder != self._root:  # (the content's folder, its numbered ones)
                try:
                    os.rmdir(folder)
                except OSError:
                    break
                folder = os.path.dirname(folder)

    def forget_originals(self, digests: list[str]) -> None:
        """Drop the originals of `digests` (see `keep_originals`): the process sending them
        no longer refers to them. The copies handed out stay while their Files live."""
        with self._lock:
            root = self._root
            if root is None:
                return
            for digest in digests:
                path = os.path.join(root, os.path.basename(digest) + ".original")
                self._stored.pop(path, None)
                _unlink(path)

    def spare(self) -> int:
        """Bytes of contents no File owns that the store keeps now."""
        with self._lock:
            self._trim()
            return self._spare_total

    def download(self, url: str, owner: Any = None) -> str:
        """The local path of `url`'s content, downloaded on first use (``file:`` URLs are
        local paths already), kept while `owner` lives."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "file":
            return urllib.request.url2pathname(parsed.path)

        def fetch(out: int) -> None:
            with (
                urllib.request.urlopen(url) as response,  # noqa: S310 - the user's URL
                os.fdopen(out, "wb", closefd=False) as fh,
            ):
                shutil.copyfileobj(response, fh)

        key = "url-" + hashlib.sha256(url.encode()).hexdigest()[:40]
        return self.put(key, os.path.basename(parsed.path) or "download", None, fetch, owner)

    def remove(self) -> None:
        """Delete the store (at exit: the Files pointing into it are dangling afterwards)."""
        with self._lock:
            root, self._root = self._root, None
            self._stored.clear()
            self._spare.clear()
            self._spare_total = 0
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _remove_stale_stores(parent: str) -> None:
    """Remove stores whose process is gone (it was killed before it could clean up)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith("sieve-files-"):
            continue
        pid_text = name[len("sieve-files-") :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        path = os.path.join(parent, name)
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


_store = FileStore()


def store() -> FileStore:
    """This process's file store."""
    return _store


def keep_originals() -> None:
    """This process is sent references to contents it received before (a Ray actor that the
    kernel sends Files by content: `for_peer`): keep each content apart from the file user
    code gets, which user code may change, so a reference always finds the content."""
    _store.keeps_originals = True
