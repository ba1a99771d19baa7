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
a process that was killed is removed by the next process that makes its own.
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
from collections.abc import Callable
from typing import Any

__all__ = [
    "INLINE_FILE",
    "MAX_FILE_DESCRIPTORS",
    "FileStore",
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
    receiver is known to hold, which go as a reference to its store; `carried` collects those
    of the contents put inside the pickle."""

    __slots__ = ("carried", "held", "limit", "paths")

    def __init__(
        self, limit: int = MAX_FILE_DESCRIPTORS, held: set[str] | frozenset[str] = frozenset()
    ) -> None:
        self.limit = limit
        self.paths: list[tuple[str, int]] = []
        self.held = held
        self.carried: list[str] = []

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
        return (_held, (cls, file.url, name, digest, info.st_size))
    if info.st_size <= INLINE_FILE or len(outgoing.paths) >= outgoing.limit:
        data = bytearray(info.st_size)
        with open(path, "rb") as fh:
            fh.readinto(data)
        content: Any = bytes(data) if info.st_size <= INLINE_FILE else pickle.PickleBuffer(data)
        if outgoing is not _INLINE_ONLY:  # (the shared one collects nothing)
            outgoing.carried.append(digest)
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
    with memoryview(data) as view:
        path = store().put(digest, name, view.nbytes, lambda out: _write_all(out, view))
    return _received(cls, url, path)


def _held(cls: type[Any], url: str | None, name: str, digest: str, size: int) -> Any:
    """A File whose content this process received before (its sender was told so)."""

    def missing(out: int) -> None:
        raise ValueError(
            f"the content of file {name!r} ({digest[:12]}) was sent as one this process "
            "holds, and it does not: its store was removed. Fix: send the file again (a new "
            "worker gets contents anew)."
        )

    path = store().put(digest, name, size, missing)
    return _received(cls, url, path)


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
    path = store().put(digest, name, size, lambda out: _copy_descriptor(fd, out, size))
    return _received(cls, url, path)


def _received(cls: type[Any], url: str | None, path: str) -> Any:
    file = object.__new__(cls)
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


class FileStore:
    """This process's store of received (and downloaded) file contents: ``<root>/<key>/<name>``.

    Contents are keyed by their SHA-256 (downloads by their URL's), so one that arrived before
    is reused: linked under a new name if it came under another one. Thread-safe: concurrent
    arrivals of the same content each write a private part file and rename it into place.
    """

    def __init__(self, parent: str | None = None) -> None:
        self._parent = parent
        self._root: str | None = None
        self._lock = threading.Lock()
        #: path -> (size, mtime_ns) when this store wrote it (one changed since is user code's)
        self._written: dict[str, tuple[int, int]] = {}
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

    def put(self, key: str, name: str, size: int | None, write: Callable[[int], None]) -> str:
        """The path of content `key` under `name`, calling ``write(fd)`` to fill it only if
        the store does not have it yet (`size` None: not known in advance). A store that keeps
        originals writes the content once, beside, and hands out copies of it.

        Raises:
            ValueError: `write` produced other than `size` bytes (the content was cut short).
        """
        name = os.path.basename(name) or "file"
        folder = os.path.join(self.root, key)
        target = self._place(folder, name)
        if self._intact(target, size):
            return target
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if self.keeps_originals:
            original = folder + ".original"  # (beside the folder: no file name can clash)
            if not self._intact(original, size):
                self._write(original, name, size, write)
            self._write(target, name, size, functools.partial(_copy_file, original))
            return target
        for sibling in os.listdir(folder):  # the same content, arrived under another name
            other = os.path.join(folder, sibling)
            if sibling.startswith(".") or not self._intact(other, size):
                continue
            part = os.path.join(folder, f".part-{secrets.token_hex(8)}")
            try:
                os.link(other, part)
                os.replace(part, target)
            except OSError:
                break
            self._record(target)
            return target
        self._write(target, name, size, write)
        return target

    def _write(self, path: str, name: str, size: int | None, write: Callable[[int], None]) -> None:
        """Fill `path` with ``write(fd)`` (into a part file renamed into place).

        Raises:
            ValueError: `write` produced other than `size` bytes.
        """
        part = os.path.join(os.path.dirname(path), f".part-{secrets.token_hex(8)}")
        out = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
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
            os.replace(part, path)
        except BaseException:
            try:
                os.unlink(part)
            except OSError:
                pass
            raise
        self._record(path)

    def _place(self, folder: str, name: str) -> str:
        """Where a content arriving under `name` goes: its folder, unless the file there was
        changed since this store wrote it (user code changed a File it got: the change is
        kept, and the arrival goes to a numbered folder beside it)."""
        target = os.path.join(folder, name)
        number = 0
        while self._changed(target):
            number += 1
            target = os.path.join(folder, str(number), name)
        return target

    def _changed(self, path: str) -> bool:
        written = self._written.get(path)
        if written is None:
            return False
        try:
            info = os.stat(path)
        except OSError:
            return False  # (removed: the place is free again)
        return (info.st_size, info.st_mtime_ns) != written

    def _intact(self, path: str, size: int | None) -> bool:
        try:
            info = os.stat(path)
        except OSError:
            return False
        written = self._written.get(path)
        return (
            stat.S_ISREG(info.st_mode)  # (not the numbered folder of a changed file's content)
            and (size is None or info.st_size == size)
            and (written is None or written == (info.st_size, info.st_mtime_ns))
        )

    def _record(self, path: str) -> None:
        info = os.stat(path)
        self._written[path] = (info.st_size, info.st_mtime_ns)

    def download(self, url: str) -> str:
        """The local path of `url`'s content, downloaded on first use (``file:`` URLs are
        local paths already)."""
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
        return self.put(key, os.path.basename(parsed.path) or "download", None, fetch)

    def remove(self) -> None:
        """Delete the store (at exit: the Files pointing into it are dangling afterwards)."""
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


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
