"""Images for results: sniffing formats and sizes, encoding arrays as PNG, and drawing a
detector's boxes over the image the job was given.

Standard library only (Pillow and numpy are used when the value already is one of theirs).
"""

from __future__ import annotations

import base64
import html
import io
import os
import struct
import zlib
from typing import Any

__all__ = ["boxes_html", "find_boxes", "image_bytes", "image_size", "input_image", "sniff_image"]

IMAGE_EXT = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".gif": "gif",
    ".webp": "webp",
    ".bmp": "bmp",
    ".svg": "svg+xml",
}
MAX_INLINE_BYTES = 25 * 1024 * 1024  # bigger media are linked, not pushed through the comm
_BOX_COLORS = ("#ff3d00", "#00b0ff", "#76ff03", "#ffea00", "#d500f9", "#1de9b6")


def sniff_image(data: bytes) -> str | None:
    """The image format of `data` by its magic number (``png``, ``jpeg``, ``gif``, ``webp``)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def encode_png(array: Any) -> bytes:
    """Encode a uint8 H×W×C array (C = 3 or 4) as PNG with the standard library only."""
    height, width, channels = (int(n) for n in array.shape)
    raw = array.tobytes()
    row = width * channels
    # each scanline is prefixed by filter type 0 (none)
    lines = b"".join(b"\x00" + raw[y * row : (y + 1) * row] for y in range(height))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + tag
            + body
            + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    color = 2 if channels == 3 else 6
    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(lines, 6))
        + chunk(b"IEND", b"")
    )


def _is_image_array(value: Any) -> bool:
    kind = type(value)
    if kind.__module__ != "numpy" or kind.__name__ != "ndarray":
        return False
    shape: tuple[int, ...] = tuple(getattr(value, "shape", ()))
    return (
        str(getattr(value, "dtype", "")) == "uint8"
        and len(shape) == 3
        and shape[2] in (3, 4)
        and shape[0] >= 2
        and shape[1] >= 2
    )


def image_bytes(value: Any) -> tuple[bytes, str] | None:
    """Raw image bytes (by magic number) or a uint8 H×W×3/4 array, as (bytes, format)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        fmt = sniff_image(data)
        return (data, fmt) if fmt else None
    if _is_image_array(value):
        return encode_png(value), "png"
    return None


def input_image(value: Any) -> tuple[bytes, str] | None:
    """An argument that is an image, as (bytes, format): a `sieve.Image`/`File` or path to an
    image file, image bytes, a PIL image or a uint8 array."""
    found = image_bytes(value)
    if found is not None:
        return found
    path = getattr(value, "path", None) if not isinstance(value, (str, os.PathLike)) else value
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower()
        if ext in IMAGE_EXT and os.path.isfile(path) and os.path.getsize(path) <= MAX_INLINE_BYTES:
            with open(path, "rb") as handle:
                data = handle.read()
            return data, sniff_image(data) or IMAGE_EXT[ext]
    if callable(getattr(value, "save", None)) and hasattr(value, "size"):  # a PIL image
        buffer = io.BytesIO()
        try:
            value.save(buffer, format="PNG")
        except Exception:  # noqa: BLE001 - not an image after all
            return None
        return buffer.getvalue(), "png"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, JPEG, GIF or WebP image, read from its header."""
    fmt = sniff_image(data)
    try:
        if fmt == "png":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if fmt == "gif":
            width, height = struct.unpack("<HH", data[6:10])
            return int(width), int(height)
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "webp":
            return _webp_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            index += 1
            continue
        marker = data[index + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return int(width & 0x3FFF), int(height & 0x3FFF)
    if kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        return (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
        )
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sequence(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def find_boxes(value: Any) -> list[tuple[list[float], str]] | None:
    """``[([x1, y1, x2, y2], label), ...]`` from a detector-style result: a dict whose
    ``boxes`` are 4-number lists (or dicts with ``box``/``bbox``), with optional ``labels``
    and ``scores`` beside them. None when the value holds no boxes."""
    if not isinstance(value, dict):
        return None
    raw = value.get("boxes")
    if not isinstance(raw, (list, tuple)) or not raw:
        return None
    labels = _sequence(value.get("labels"))
    scores = _sequence(value.get("scores"))
    found: list[tuple[list[float], str]] = []
    for index, item in enumerate(raw):
        label, score = (
            labels[index] if index < len(labels) else None,
            scores[index] if index < len(scores) else None,
        )
        if isinstance(item, dict):
            label = item.get("label", label)
            score = item.get("score", score)
            item = item.get("box", item.get("bbox"))
        if not isinstance(item, (list, tuple)) or len(item) != 4:
            return None
        coords = [_number(c) for c in item]
        if any(c is None for c in coords):
            return None
        text = " ".join(
            filter(
                None,
                [
                    str(label) if label is not None else "",
                    f"{score:.2f}" if _number(score) is not None else "",
                ],
            )
        )
        found.append(([c for c in coords if c is not None], text))
    return found


def boxes_html(data: bytes, fmt: str, boxes: list[tuple[list[float], str]]) -> str | None:
    """The image with its boxes drawn over it (SVG on top, so it scales with the image)."""
    size = image_size(data)
    if size is None:
        return None
    width, height = size
    stroke = max(2.0, min(width, height) / 200)
    font = max(11.0, min(width, height) / 30)
    shapes = []
    for index, ((x1, y1, x2, y2), label) in enumerate(boxes):
        color = _BOX_COLORS[index % len(_BOX_COLORS)]
        shapes.append(
            f'<rect x="{x1:g}" y="{y1:g}" width="{max(x2 - x1, 0):g}" '
            f'height="{max(y2 - y1, 0):g}" fill="none" stroke="{color}" '
            f'stroke-width="{stroke:g}"/>'
        )
        if label:
            # a filled tag on the box's top edge (inside it when the box touches the top)
            tag_w, tag_h = len(label) * font * 0.62 + font * 0.6, font * 1.35
            tag_y = y1 - tag_h if y1 >= tag_h else y1
            shapes.append(
                f'<rect x="{x1 - stroke / 2:g}" y="{tag_y:g}" width="{tag_w:g}" '
                f'height="{tag_h:g}" fill="{color}"/>'
            )
            shapes.append(
                f'<text x="{x1 + font * 0.3:g}" y="{tag_y + font * 1.02:g}" '
                f'fill="#000" font-size="{font:g}" font-family="sans-serif">'
                f"{html.escape(label)}</text>"
            )
    source = f"data:image/{fmt};base64,{base64.b64encode(data).decode()}"
    return (
        f'<div class="sieve-boxes" style="position:relative;display:inline-block;'
        f'max-width:100%;line-height:0">'
        f'<img src="{source}" style="max-width:100%;height:auto;display:block" '
        f'alt="input image with {len(boxes)} boxes">'
        f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        'style="position:absolute;left:0;top:0;width:100%;height:100%">'
        + "".join(shapes)
        + "</svg></div>"
    )
