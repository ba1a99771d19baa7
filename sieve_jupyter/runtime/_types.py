"""Types user code touches inside a worker: `File` (and its media aliases) and `FatalException`."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from typing import Any

from sieve_jupyter.runtime import _files

__all__ = ["Audio", "FatalException", "File", "Image", "Video"]


class FatalException(Exception):
    """Raise from user code to fail the job *and* restart the worker, even when
    `restart_on_error` is False.

    Use it when the worker's warm state can no longer be trusted (a corrupted model, a wedged GPU).
    """


class File:
    """A file argument or result, given as a local path or a URL.

    The file behind a URL is downloaded lazily, the first time `.path` is read, into a temporary
    folder of the process that reads it (once per URL), so a `File` can be created in the
    notebook and read in a worker. Local paths are used as they are. Sent to a process that does
    not see this one's files (a container), a File takes its content along and arrives as a
    local file there (see `runtime/_files.py`).

    Args:
        path: a local path (``"frame.png"``) or a URL (``"https://.../video.mp4"``).
        url: the same, as Sieve's SDK also accepts ``File(url=...)``.
    """

    __slots__ = ("_source", "_local", "__weakref__")  # (weakly: its content in the store)

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, url: str | None = None
    ) -> None:
        source = url if url is not None else path
        if source is None:
            raise ValueError("File: give a local path or a URL, e.g. sieve.File('frame.png')")
        self._source = os.fspath(source)
        self._local: str | None = _local_path(self._source)

    @property
    def url(self) -> str | None:
        """The URL this file came from, or ``None`` for a local file."""
        return self._source if _is_url(self._source) else None

    @property
    def path(self) -> str:
        """A local path to the file's content, downloading it on first use."""
        if self._local is None:
            self._local = _files.store().download(self._source, self)
        return self._local

    def __fspath__(self) -> str:
        return self.path

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, File) or type(other) is not type(self):
            return False
        return other._source == self._source

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._source))

    def __repr__(self) -> str:
        return f"sieve.{type(self).__name__}({self._source!r})"

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # By reference (its path or URL), or with its content on a channel to a process that
        # does not share this one's files. A downloaded copy stays in the process that fetched it.
        return _files.reduce_file(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._source = state["source"]
        self._local = _local_path(self._source)


class Image(File):
    """A `File` holding an image (kept for code written against Sieve's older SDK)."""

    __slots__ = ()


class Video(File):
    """A `File` holding a video (kept for code written against Sieve's older SDK)."""

    __slots__ = ()


class Audio(File):
    """A `File` holding audio (kept for code written against Sieve's older SDK)."""

    __slots__ = ()


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https", "ftp", "file")


def _local_path(source: str) -> str | None:
    """The path of a local source (a ``file:`` URL's too); None for one to download."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme == "file":
        return urllib.request.url2pathname(parsed.path)
    return None if parsed.scheme in ("http", "https", "ftp") else source
