"""Show a job's result or error as a widget: images as images, tables as tables, text readably.

`render_value` picks the richest faithful view: image bytes, `sieve.File` media and uint8
image arrays become image/video/audio widgets; objects with rich reprs (a pandas DataFrame's
HTML, a PIL image's PNG) go through IPython's display formatter into an `Output` widget; strings
and JSON-able data are shown as preformatted text. `render_error` shows the exception type,
message and the worker's traceback.
"""

from __future__ import annotations

import html
import json
import os
import struct
import traceback
import zlib
from typing import Any

import ipywidgets as widgets

__all__ = ["error_parts", "render_error", "render_value", "text_preview"]

_IMAGE_EXT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".webp": "webp",
              ".bmp": "bmp", ".svg": "svg+xml"}
_VIDEO_EXT = {".mp4": "mp4", ".webm": "webm", ".ogv": "ogg", ".mov": "mp4"}
_AUDIO_EXT = {".wav": "wav", ".mp3": "mpeg", ".ogg": "ogg", ".flac": "flac", ".m4a": "mp4"}
_MAX_INLINE_BYTES = 25 * 1024 * 1024  # bigger media are linked, not pushed through the comm
_MAX_TEXT = 20_000  # characters shown before truncating; the full value stays on the future
_PRE = ('<pre style="white-space:pre-wrap;word-break:break-word;margin:0;max-height:400px;'
        'overflow:auto">{}</pre>')


def _image_layout() -> widgets.Layout:
    # natural size, shrunk to fit: a column flex box would otherwise stretch a small image wide
    return widgets.Layout(max_width="100%", width="auto", height="auto", align_self="flex-start")


def render_value(value: Any) -> widgets.Widget:
    """Return a widget showing `value` as richly as it allows."""
    image = _image_bytes(value)
    if image is not None:
        data, fmt = image
        return widgets.Image(value=data, format=fmt, layout=_image_layout())
    media = _file_media(value)
    if media is not None:
        return media
    if isinstance(value, str):
        return widgets.HTML(_PRE.format(_escape(_truncate(value))))
    if value is None or isinstance(value, (bool, int, float)):
        return widgets.HTML(_PRE.format(_escape(repr(value))))
    if isinstance(value, (dict, list, tuple)) and _is_json(value):
        text = json.dumps(value, indent=2, ensure_ascii=False)
        return widgets.HTML(_PRE.format(_escape(_truncate(text))))
    return _rich_output(value)


def text_preview(value: Any, limit: int = 300) -> str:
    """A one-paragraph plain-text view of `value` (for summaries and saved notebooks)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (dict, list, tuple)) and _is_json(value):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_parts(exc: BaseException) -> tuple[str, str, str]:
    """``(type name, message, traceback text)`` of a job's exception, preferring the worker's
    traceback over the kernel-side one (which only shows where the future re-raised it)."""
    type_name = getattr(exc, "type_name", None) or type(exc).__name__
    message = getattr(exc, "message", None) if hasattr(exc, "type_name") else None
    if message is None:
        message = str(exc)
    remote = getattr(exc, "remote_traceback", None)
    if not remote and isinstance(getattr(exc, "traceback", None), str):
        remote = exc.traceback  # type: ignore[attr-defined]  # RemoteError's name for it
    if not remote and exc.__cause__ is not None and hasattr(exc.__cause__, "tb"):
        remote = exc.__cause__.tb  # RemoteTraceback chained as the cause
    if not isinstance(remote, str) or not remote:
        remote = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return str(type_name), str(message), remote


def render_error(exc: BaseException) -> widgets.HTML:
    """Return a widget with the error's type and message, and its traceback below."""
    return widgets.HTML(error_html(exc, open_traceback=True))


def error_html(exc: BaseException, *, open_traceback: bool = False, title: str = "") -> str:
    """HTML for one error: a red headline and a (collapsible) traceback."""
    type_name, message, tb = error_parts(exc)
    head = f"{html.escape(title)} " if title else ""
    opened = " open" if open_traceback else ""
    return (
        f'<div style="color:#b71c1c"><b>{head}{html.escape(type_name)}</b>: '
        f"{html.escape(_truncate(message, 2000))}</div>"
        f'<details{opened}><summary style="cursor:pointer;color:#666">traceback</summary>'
        + _PRE.format(_escape(_truncate(tb)))
        + "</details>"
    )


def _escape(text: str) -> str:
    return html.escape(text, quote=False)  # text content: quotes stay readable


def _truncate(text: str, limit: int = _MAX_TEXT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit} more characters)"


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _image_bytes(value: Any) -> tuple[bytes, str] | None:
    """Raw image bytes (by magic number) or a uint8 H×W×3/4 array, as (bytes, format)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        fmt = _sniff_image(data)
        return (data, fmt) if fmt else None
    array_type = type(value)
    if array_type.__module__ == "numpy" and array_type.__name__ == "ndarray":
        shape: tuple[int, ...] = tuple(getattr(value, "shape", ()))
        if (str(getattr(value, "dtype", "")) == "uint8" and len(shape) == 3
                and shape[2] in (3, 4) and shape[0] >= 2 and shape[1] >= 2):
            return _encode_png(value), "png"
    return None


def _sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _encode_png(array: Any) -> bytes:
    """Encode a uint8 H×W×C array (C = 3 or 4) as PNG with the standard library only."""
    height, width, channels = (int(n) for n in array.shape)
    raw = array.tobytes()
    row = width * channels
    # each scanline is prefixed by filter type 0 (none)
    lines = b"".join(b"\x00" + raw[y * row:(y + 1) * row] for y in range(height))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))

    color = 2 if channels == 3 else 6
    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(lines, 6)) + chunk(b"IEND", b""))


def _file_media(value: Any) -> widgets.Widget | None:
    """A `sieve.File` (or Image/Video/Audio) result: show media inline, link anything else."""
    from sieve_jupyter.runtime import Audio, File, Image, Video

    if not isinstance(value, File):
        return None
    url = value.url
    source = url or value.path
    ext = os.path.splitext(source.split("?")[0])[1].lower()
    local = None if url else value.path
    too_big = (local is None or not os.path.isfile(local)
               or os.path.getsize(local) > _MAX_INLINE_BYTES)
    if isinstance(value, Image) or ext in _IMAGE_EXT:
        if url:
            return widgets.HTML(f'<img src="{html.escape(url)}" style="max-width:100%">')
        if not too_big and local is not None:
            with open(local, "rb") as handle:
                data = handle.read()
            fmt = _IMAGE_EXT.get(ext, _sniff_image(data) or "png")
            return widgets.Image(value=data, format=fmt, layout=_image_layout())
    if (isinstance(value, Video) or ext in _VIDEO_EXT) and not too_big and local is not None:
        return widgets.Video.from_file(local, autoplay=False, loop=False)
    if (isinstance(value, Audio) or ext in _AUDIO_EXT) and not too_big and local is not None:
        return widgets.Audio.from_file(local, autoplay=False, loop=False)
    size = f" ({os.path.getsize(local):,} bytes)" if local and os.path.isfile(local) else ""
    return widgets.HTML(f"<code>{html.escape(repr(value))}</code>{html.escape(size)}")


def _rich_output(value: Any) -> widgets.Widget:
    """Anything else: IPython's formatters decide (DataFrame -> HTML table, PIL -> PNG, ...)."""
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    try:
        from IPython.core.formatters import DisplayFormatter
        from IPython.core.interactiveshell import InteractiveShell

        # the kernel's formatter knows user-registered formatters; a bare one still finds _repr_*_
        shell_formatter = (InteractiveShell.instance().display_formatter
                           if InteractiveShell.initialized() else None)
        formatter = shell_formatter or DisplayFormatter()
        data, metadata = formatter.format(value)  # type: ignore[no-untyped-call]
    except Exception:  # a broken _repr_*_ must not hide the result: fall back to repr below
        data = {}
    if not data:
        return widgets.HTML(_PRE.format(_escape(_truncate(_safe_repr(value)))))
    if set(data) == {"text/plain"}:
        return widgets.HTML(_PRE.format(_escape(_truncate(str(data["text/plain"])))))
    out = widgets.Output()
    out.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)
    return out


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a result whose repr raises still deserves a readable line
        return f"<{type(value).__name__} object; repr failed: {exc}>"
