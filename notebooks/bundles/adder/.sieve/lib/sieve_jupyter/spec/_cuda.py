"""The CUDA toolkit releases a spec may name, kept as data, and how partial versions resolve.

A spec stores a full ``major.minor.patch`` version because that is what CUDA base images are
tagged with (``nvidia/cuda:12.2.2-cudnn8-runtime-ubuntu22.04``). Users may write ``"12.2"`` or
``"12"``; those resolve to the newest release in the table that starts with them.
"""

from __future__ import annotations

import re

from sieve_jupyter._errors import SpecError

__all__ = ["CUDA_VERSIONS", "DEFAULT_CUDA_VERSION", "resolve_cuda_version"]

#: Every CUDA toolkit release from 11.0 on, oldest first. Add new releases at the end of their
#: minor line; `resolve_cuda_version` picks the newest patch of a minor line.
CUDA_VERSIONS: tuple[str, ...] = (
    "11.0.3",
    "11.1.1",
    "11.2.0", "11.2.1", "11.2.2",
    "11.3.0", "11.3.1",
    "11.4.0", "11.4.1", "11.4.2", "11.4.3", "11.4.4",
    "11.5.0", "11.5.1", "11.5.2",
    "11.6.0", "11.6.1", "11.6.2",
    "11.7.0", "11.7.1",
    "11.8.0",
    "12.0.0", "12.0.1",
    "12.1.0", "12.1.1",
    "12.2.0", "12.2.1", "12.2.2",
    "12.3.0", "12.3.1", "12.3.2",
    "12.4.0", "12.4.1",
    "12.5.0", "12.5.1",
    "12.6.0", "12.6.1", "12.6.2", "12.6.3",
    "12.8.0", "12.8.1",
    "12.9.0", "12.9.1",
    "13.0.0", "13.0.1", "13.0.2",
    "13.1.0", "13.1.1",
    "13.2.0", "13.2.1", "13.2.2",
    "13.3.0", "13.3.1",
    "13.4.1", "13.4.2", "13.4.3",
    "13.5.0",
)  # fmt: skip

#: The CUDA version a GPU function gets when it names none: the newest 12.x line that current
#: PyTorch wheels target (``cu126``) and that drivers >= 525 run through minor-version
#: compatibility.
DEFAULT_CUDA_VERSION = "12.6.3"

_VERSION_RE = re.compile(r"^\d+(\.\d+){0,2}$")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def resolve_cuda_version(version: str, *, field: str = "cuda_version") -> str:
    """Resolve a CUDA version to a full release from `CUDA_VERSIONS`.

    ``"12.2.2"`` stays as it is; ``"12.2"`` becomes the newest 12.2 patch (``"12.2.2"``);
    ``"12"`` the newest 12.x release; PyTorch's ``"cu121"`` means 12.1; a leading ``"v"`` is
    ignored.

    Raises:
        SpecError: the value is not a string, is malformed, or names no known release.
    """
    if not isinstance(version, str):
        raise SpecError(
            field,
            f"must be a string, got {type(version).__name__} {version!r}.",
            f'write it in quotes, e.g. cuda_version="{DEFAULT_CUDA_VERSION}".',
        )
    text = version.strip().lower()
    if re.fullmatch(r"cu\d{3,}", text):  # PyTorch's wheel tags: cu121 -> 12.1
        text = f"{text[2:4]}.{text[4:]}"
    text = text.removeprefix("v")
    if not _VERSION_RE.match(text):
        raise SpecError(
            field,
            f"{version!r} is not a CUDA version.",
            f'write major.minor or major.minor.patch, e.g. "{DEFAULT_CUDA_VERSION}".',
        )
    wanted = _key(text)
    matches = [v for v in CUDA_VERSIONS if _key(v)[: len(wanted)] == wanted]
    if not matches:
        lines = sorted({".".join(v.split(".")[:2]) for v in CUDA_VERSIONS}, key=_key)
        raise SpecError(
            field,
            f"unknown CUDA version {version!r}.",
            f"use one of the known releases ({', '.join(lines)}; a minor version picks its "
            "newest patch).",
        )
    return max(matches, key=_key)
