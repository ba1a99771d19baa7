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

The store (`_file_store.FileStore`) is a private temporary folder, removed at exit. While the
process lives, a content stays as long as a File points at it; once none does, it is kept in case
it arrives again, up to `SPARE_BYTES` of such contents, beyond which the least recently used go.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import os
import pickle
import stat
import threading
from typing import Any, TypeVar

from sieve_jupyter.runtime import _file_store
from sieve_jupyter.runtime._file_store import FileStore, copy_descriptor, write_all

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
    "file_from_content",
    "keep_originals",
    "filesystem_id",
    "receiving",
    "reduce_file",
    "sending_content",
    "store",
]

_F = TypeVar("_F")

#: files up to this size travel inside the pickle; larger ones as a descriptor
INLINE_FILE = 64 * 1024
#: descriptors one frame may carry for files; beyond, contents are read into buffers (which go
#: through shared memory)
MAX_FILE_DESCRIPTORS = 64
_DIGEST_CACHE = 4096

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
        self.limit_bytes = _file_store.SPARE_BYTES if limit_bytes is None else limit_bytes
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
        path = store().put(digest, name, view.nbytes, lambda out: write_all(out, view), file)
    return _received(file, url, path)


def file_from_content(cls: type[_F], name: str, data: bytes) -> _F:
    """A `cls` File holding `data`, which reached this process other than in a File (a data
    URL in an HTTP answer): kept in the store by its content, as any content received, while
    a File holds it (the same content twice is one path)."""
    file: _F = _with_content(cls, None, name, hashlib.sha256(data).hexdigest(), data)
    return file


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
    path = store().put(digest, name, size, lambda out: copy_descriptor(fd, out, size), file)
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


_store = FileStore()


def store() -> FileStore:
    """This process's file store."""
    return _store


def keep_originals() -> None:
    """This process is sent references to contents it received before (a Ray actor that the
    kernel sends Files by content: `for_peer`): keep each content apart from the file user
    code gets, which user code may change, so a reference always finds the content."""
    _store.keeps_originals = True
