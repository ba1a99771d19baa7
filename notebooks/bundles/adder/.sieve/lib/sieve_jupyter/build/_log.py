"""Follow an image build's log: which step runs, what it printed, and why it failed.

The Docker engine streams a build as JSON chunks (``{"stream": ...}``, ``{"status": ...}``,
``{"error": ...}``); `BuildLog` turns them into display lines and remembers enough to explain a
failure (the failing ``Step N/M : ...`` and the tail of its output). Pure logic, no Docker calls.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["BuildLog"]

_STEP_RE = re.compile(r"^Step \d+/\d+ : (.*)$")


class BuildLog:
    """Accumulates one build's output.

    Attributes:
        step: the instruction of the current (or failing) step, e.g. ``"RUN pip install ..."``.
        error: the engine's error message once the build failed, else ``""``.
    """

    def __init__(self, tail_lines: int = 40) -> None:
        self.step = ""
        self.error = ""
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._partial = ""

    def feed(self, chunk: Mapping[str, Any]) -> list[str]:
        """Take one decoded chunk of the engine's build stream; return complete lines to show."""
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            self.error = str(chunk.get("error") or detail.get("message") or "build failed").strip()
            return [*self._flush(), f"ERROR: {self.error}"]
        if "stream" in chunk:
            return self._lines(str(chunk["stream"]))
        if "status" in chunk:
            # base image pulls: one line per layer event, progress bars dropped
            status = str(chunk["status"])
            ident = chunk.get("id")
            return [f"{ident}: {status}" if ident else status]
        return []

    def _lines(self, text: str) -> list[str]:
        text = self._partial + text.replace("\r\n", "\n")
        *complete, self._partial = text.split("\n")
        out: list[str] = []
        for line in complete:
            # a carriage return redraws the line (apt/pip progress): keep what was drawn last
            line = line.rsplit("\r", 1)[-1]
            match = _STEP_RE.match(line)
            if match:
                self.step = match.group(1).strip()
                self._tail.clear()
            elif line.strip() and not line.startswith(" ---> "):
                self._tail.append(line)
            out.append(line)
        return out

    def _flush(self) -> list[str]:
        if not self._partial:
            return []
        rest, self._partial = self._partial, ""
        self._tail.append(rest)
        return [rest]

    def finish(self) -> list[str]:
        """Lines still buffered at the end of the stream."""
        return self._flush()

    @property
    def tail(self) -> str:
        """The last lines the current step printed."""
        return "\n".join(self._tail)
