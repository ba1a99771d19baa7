"""Follow an image build's log: which step runs, what it printed, and why it failed.

The Docker engine streams a build as JSON chunks (``{"stream": ...}``, ``{"status": ...}``,
``{"error": ...}``); `BuildLog` turns them into display lines and remembers enough to explain a
failure (the failing ``Step N/M : ...``, the tail of its output, and the fix when the tail shows
a known cause). Pure logic, no Docker calls.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from typing import Any

from sieve_jupyter._errors import BuildError

__all__ = ["BuildLog"]

_STEP_RE = re.compile(r"^Step \d+/\d+ : (.*)$")
# the engine colours a step's standard error (``ESC[91m`` ... ``ESC[0m``): kept on the lines
# shown (a notebook renders them), dropped from the tail an error message quotes
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")

# Causes a step's output names, and their fixes, first match wins: the image's own scripts
# first, then the engine's network and certificates before a package (pip reports an
# unreachable index as a missing version).
_FIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    # what a script of the image's own says (``sieve: ... Fix: ...``, e.g. no such Python)
    (re.compile(r"^sieve: (.*Fix: .*)$", re.MULTILINE), "{0}"),
    (
        re.compile(
            r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSL certificate problem"
            r"|certificate verification failed",
            re.IGNORECASE,
        ),
        "The build does not trust the certificate the package index presented (a proxy that "
        "re-signs TLS?). Fix: point docker_ca_bundle (or SIEVE_DOCKER_CA_BUNDLE) at a PEM file "
        "of the certificates to trust, e.g. /etc/ssl/certs/ca-certificates.crt.",
    ),
    (
        re.compile(
            r"Temporary failure in name resolution|Could not resolve host|Network is unreachable"
            r"|Name or service not known|Failed to establish a new connection"
        ),
        "The build's RUN steps cannot reach the network. Fix: set "
        "SIEVE_DOCKER_BUILD_NETWORK=host where the engine's default network has no route out, "
        "or check the engine's proxy.",
    ),
    (
        re.compile(r"No matching distribution found for (\S+)"),
        "The package index has no release of {0}. Fix: check its name and version in "
        "python_packages, and that the build reaches the package index.",
    ),
    (
        re.compile(r"Unable to locate package (\S+)"),
        "No apt package is called {0}. Fix: check its name in system_packages (the base image's "
        "distribution may call it differently).",
    ),
)


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
        """The last lines the current step printed (without the engine's colours)."""
        return _ANSI_RE.sub("", "\n".join(self._tail))

    def fix(self) -> str:
        """What went wrong and how to fix it, when the tail shows a known cause; else ``""``."""
        tail = self.tail
        for pattern, fix in _FIXES:
            match = pattern.search(tail)
            if match:
                text = fix.format(*match.groups())
                return text[:1].upper() + text[1:]
        return ""

    def failure(self, what: str, fix: str = "") -> BuildError:
        """The error for a failed build of `what` (e.g. ``"image x:1"``): the failing step, the
        engine's message, the fix (`fix`, else one the tail shows) and the tail itself."""
        step = f" at step `{self.step}`" if self.step else ""
        fix = fix or self.fix()
        return BuildError(
            f"docker build of {what} failed{step}: {self.error or 'no image'}."
            + (f" {fix}" if fix else "")
            + f"\n--- last lines of the step ---\n{self.tail}",
            step=self.step,
            log_tail=self.tail,
        )
