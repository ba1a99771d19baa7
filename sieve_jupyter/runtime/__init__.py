"""What runs inside a worker process or container.

This package is self-contained: it imports only the standard library and cloudpickle, because
it is mounted read-only into containers and copied into deployment bundles where nothing else of
sieve-jupyter is installed. Never import the rest of the package from here.
"""

from __future__ import annotations

from sieve_jupyter.runtime._context import RemoteFunction, current_context, report_progress
from sieve_jupyter.runtime._exported import load_exported
from sieve_jupyter.runtime._types import Audio, FatalException, File, Image, Video

__all__ = [
    "Audio",
    "FatalException",
    "File",
    "Image",
    "RemoteFunction",
    "Video",
    "current_context",
    "load_exported",
    "report_progress",
]
