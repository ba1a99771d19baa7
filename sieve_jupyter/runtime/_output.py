"""What user code prints in a worker goes to the kernel, tagged with the job that printed it."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Literal

from sieve_jupyter.runtime.messages import Log

__all__ = ["CapturedStream"]


class CapturedStream(io.TextIOBase):
    """Replaces sys.stdout or sys.stderr. Text is sent as a `Log` at each line end (or once
    8 KiB pile up), and whatever is left when the job ends (see `flush`)."""

    def __init__(
        self,
        name: Literal["stdout", "stderr"],
        send: Callable[[Log], None],
        current_job: Callable[[], str | None],
    ) -> None:
        self._name: Literal["stdout", "stderr"] = name
        self._send = send
        self._current_job = current_job
        self._buffer: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._buffer.append(text)
            self._size += len(text)
            urgent = "\n" in text or "\r" in text or self._size > 8192
        if urgent:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._buffer:  # (the common case, checked without the lock)
            return
        with self._lock:
            if not self._buffer:
                return
            text = "".join(self._buffer)
            self._buffer.clear()
            self._size = 0
        self._send(Log(self._current_job(), self._name, text))
