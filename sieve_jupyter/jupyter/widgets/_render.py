"""Show a job's result or error as a widget: images as images, JSON as JupyterLab's JSON
viewer, detections drawn over their image, arrays by shape and dtype, tables as tables.

`render_value` picks the richest faithful view: image bytes, `sieve.File` media and uint8
image arrays become image/video/audio widgets; a dict of ``boxes`` with an image among the
job's inputs is drawn over that image; dicts and lists go to JupyterLab's collapsible JSON
viewer (``application/json``); arrays show their shape, dtype and a preview; objects with rich
reprs (a DataFrame's HTML, a PIL image's PNG) go through IPython's display formatter; strings,
numbers and ``None`` are shown as they read. `render_error` shows the error as IPython would
(`error_text`).
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

import ipywidgets as widgets

from sieve_jupyter.jupyter._tracebacks import error_text
from sieve_jupyter.jupyter.widgets._media import (
    IMAGE_EXT,
    MAX_INLINE_BYTES,
    boxes_html,
    find_boxes,
    image_bytes,
    input_image,
    sniff_image,
)
from sieve_jupyter.jupyter.widgets._style import INLINE

__all__ = ["error_html", "render_error", "render_value", "text_preview"]

_VIDEO_EXT = {".mp4": "mp4", ".webm": "webm", ".ogv": "ogg", ".mov": "mp4"}
_AUDIO_EXT = {".wav": "wav", ".mp3": "mpeg", ".ogg": "ogg", ".flac": "flac", ".m4a": "mp4"}
_MAX_TEXT = 20_000  # characters shown before truncating; the full value stays on the future


def _pre(text: str) -> str:
    return f'<pre class="sieve-pre" style="{INLINE["pre"]}">{_escape(text)}</pre>'


def _image_layout() -> widgets.Layout:
    # natural size, shrunk to fit: a column flex box would otherwise stretch a small image wide
    return widgets.Layout(max_width="100%", width="auto", height="auto", align_self="flex-start")


def render_value(value: Any, inputs: dict[str, Any] | None = None) -> widgets.Widget:
    """Return a widget showing `value` as richly as it allows.

    Args:
        value: the job's result.
        inputs: the job's arguments by name; a result with ``boxes`` is drawn over the first
            image among them.
    """
    image = image_bytes(value)
    if image is not None:
        data, fmt = image
        return widgets.Image(value=data, format=fmt, layout=_image_layout())
    media = _file_media(value)
    if media is not None:
        return media
    if isinstance(value, str):
        return widgets.HTML(_pre(_truncate(value)))
    if value is None or isinstance(value, (bool, int, float)):
        return widgets.HTML(_pre(repr(value)))
    if isinstance(value, (dict, list, tuple)) and _is_json(value):
        drawn = _boxes_over_input(value, inputs or {})
        if drawn is None:
            return _json_viewer(value)
        return widgets.VBox([drawn, _json_viewer(value, expanded=False)])
    array = _array_view(value)
    if array is not None:
        return array
    return _rich_output(value)


def _json_viewer(value: Any, *, expanded: bool | None = None) -> widgets.Output:
    """JupyterLab's JSON viewer (collapsible, searchable); plain JSON text elsewhere. Small
    values open unfolded."""
    out = widgets.Output()
    text = json.dumps(value, indent=2, ensure_ascii=False)
    opened = len(text) < 2000 if expanded is None else expanded
    out.outputs = (
        {
            "output_type": "display_data",
            "data": {"application/json": value, "text/plain": _truncate(text)},
            "metadata": {"application/json": {"expanded": opened}},
        },
    )
    out.add_class("sieve-json")
    return out


def _boxes_over_input(value: Any, inputs: dict[str, Any]) -> widgets.HTML | None:
    boxes = find_boxes(value)
    if not boxes:
        return None
    for argument in inputs.values():
        image = input_image(argument)
        if image is None:
            continue
        drawn = boxes_html(image[0], image[1], boxes)
        if drawn is not None:
            return widgets.HTML(drawn, layout=widgets.Layout(max_width="100%"))
    return None


def _array_view(value: Any) -> widgets.HTML | None:
    """An array (numpy, or anything with ``shape`` and ``dtype``): its shape, dtype, a preview."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if not isinstance(shape, tuple) or dtype is None:
        return None
    try:
        import numpy

        preview = (
            numpy.array2string(value, threshold=60, edgeitems=3, max_line_width=96)
            if isinstance(value, numpy.ndarray)
            else _safe_repr(value)
        )
    except ImportError:  # pragma: no cover - arrays without numpy: their repr
        preview = _safe_repr(value)
    shape_text = "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
    head = (
        f"<div><b>{html.escape(type(value).__name__)}</b> "
        f'<span style="{INLINE["muted"]}">shape {shape_text} · {html.escape(str(dtype))}'
        "</span></div>"
    )
    return widgets.HTML(head + _pre(_truncate(preview, 4000)))


def text_preview(value: Any, limit: int = 300) -> str:
    """A one-paragraph plain-text view of `value` (for summaries and saved notebooks)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (dict, list, tuple)) and _is_json(value):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = _safe_repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_error(exc: BaseException) -> widgets.HTML:
    """Return a widget with the error as IPython would show it: the worker's frames, named as
    IPython names them, then ``Type: message``."""
    return widgets.HTML(error_html(exc))


def error_html(exc: BaseException) -> str:
    """HTML for one error: its ``Type: message`` in red, and the frames above it."""
    text = error_text(exc)
    headline = text.rsplit("\n", 1)[-1]
    return (
        f'<div class="sieve-heading">Error</div>'
        f'<div style="{INLINE["error"]};font-weight:600">{_escape(_truncate(headline, 2000))}'
        f"</div>{_pre(_truncate(text))}"
    )


def _escape(text: str) -> str:
    return html.escape(text, quote=False)  # text content: quotes stay readable


def _truncate(text: str, limit: int = _MAX_TEXT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _file_media(value: Any) -> widgets.Widget | None:
    """A `sieve.File` (or Image/Video/Audio) result: show media inline, link anything else."""
    from sieve_jupyter.runtime import Audio, File, Image, Video

    if not isinstance(value, File):
        return None
    url = value.url
    source = url or value.path
    ext = os.path.splitext(source.split("?")[0])[1].lower()
    local = None if url else value.path
    too_big = (
        local is None or not os.path.isfile(local) or os.path.getsize(local) > MAX_INLINE_BYTES
    )
    if isinstance(value, Image) or ext in IMAGE_EXT:
        if url:
            return widgets.HTML(f'<img src="{html.escape(url)}" style="max-width:100%">')
        if not too_big and local is not None:
            with open(local, "rb") as handle:
                data = handle.read()
            fmt = IMAGE_EXT.get(ext, sniff_image(data) or "png")
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
        shell_formatter = (
            InteractiveShell.instance().display_formatter
            if InteractiveShell.initialized()
            else None
        )
        formatter = shell_formatter or DisplayFormatter()
        data, metadata = formatter.format(value)  # type: ignore[no-untyped-call]
    except Exception:  # a broken _repr_*_ must not hide the result: fall back to repr below
        data = {}
    if not data:
        return widgets.HTML(_pre(_truncate(_safe_repr(value))))
    if set(data) == {"text/plain"}:
        return widgets.HTML(_pre(_truncate(str(data["text/plain"]))))
    out = widgets.Output()
    out.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)
    return out


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a result whose repr raises still deserves a readable line
        return f"<{type(value).__name__} object; repr failed: {exc}>"
