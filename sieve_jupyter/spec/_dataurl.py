"""Data URLs (``data:<type>;base64,<data>``): how files travel inside JSON."""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
import urllib.parse
from pathlib import Path

__all__ = ["decode_data_url", "file_data_url"]

_DATA_URL = re.compile(
    r"^data:(?P<type>[^;,]*)(?P<params>(;[^;,]*)*?)(?P<b64>;base64)?,", re.DOTALL
)


def decode_data_url(url: str) -> tuple[str, bytes]:
    """(media type, bytes) of a ``data:`` URL.

    Raises:
        ValueError: it is not a well-formed data URL.
    """
    match = _DATA_URL.match(url)
    if match is None:
        raise ValueError("not a data URL (data:<type>;base64,<data>)")
    payload = url[match.end() :]
    if match.group("b64"):
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"its base64 is malformed ({exc})") from None
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    return match.group("type") or "application/octet-stream", data


def file_data_url(path: str) -> str:
    """The file at `path` as a ``data:`` URL, its media type guessed from its name."""
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:{media_type};base64,{data}"
