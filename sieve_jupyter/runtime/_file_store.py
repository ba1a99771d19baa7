"""Where a process keeps the file contents it receives: `FileStore` (see `_files.py` for how
they travel).

A store is a private temporary folder (``sieve-files-<pid>-*``) holding each content under its
SHA-256 (a download under its URL's): ``<root>/<key>/<name>``. Each path it hands out belongs
to the File it made; once no live File points at a content it is *spare*, kept in case it
arrives again up to `SPARE_BYTES`, beyond which the longest unowned go. A process sent
references to contents it holds (a Ray worker) keeps each content once more, as an *original*
beside its folder, until the sender says it no longer refers to it. The folder is removed at
exit; one left by a process that was killed is removed by the next process that makes its own.
"""

from __future__ import annotations

import atexit
import collections
import functools
import hashlib
import os
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

__all__ = ["SPARE_BYTES", "FileStore", "copy_descriptor", "write_all"]

#: bytes of received contents no File points at any more that a store keeps, in case the same
#: content arrives again
SPARE_BYTES = 1 << 30


def write_all(out: int, view: memoryview) -> None:
    view = view.cast("B")
    while view.nbytes:
        view = view[os.write(out, view) :]


def _copy_file(path: str, out: int) -> None:
    source = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        copy_descriptor(source, out, os.fstat(source).st_size)
    finally:
        os.close(source)


def copy_descriptor(source: int, out: int, size: int) -> None:
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
            write_all(out, memoryview(chunk))
            offset += len(chunk)


class _Stored:
    """A file the store wrote: its size and change time then (one that differs since was
    changed by user code; None while it is being written), how many hold it (live Files, and
    a thread writing it), and whether it is an original (never trimmed: dropped only when the
    process sending references says so, `forget_originals`)."""

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
        """A store keeping originals has none intact for the content of `folder` (kept beside
        the folder, where no file name can clash). Lock held."""
        return self.keeps_originals and not self._intact(folder + ".original", size)

    def _fill(
        self, folder: str, target: str, name: str, size: int | None, write: Callable[[int], None]
    ) -> str:
        """A part file holding the content: a copy of the original, a link to the same
        content under another name, or what ``write(fd)`` wrote."""
        if self.keeps_originals:
            original = folder + ".original"
            with self._lock:
                lacks_original = self._lacks_original(folder, size)
            if lacks_original:
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

    def _part(self, folder: str) -> tuple[str, int]:
        """A new private part file in `folder`, open for writing. Made under the lock: trimming
        removes empty folders, and one holding a part file is not empty."""
        part = os.path.join(folder, f".part-{secrets.token_hex(8)}")
        with self._lock:
            os.makedirs(folder, exist_ok=True)
            return part, os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

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
