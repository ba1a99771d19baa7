"""Rich result rendering: images as images, JSON in JupyterLab's viewer, boxes over their image,
arrays by shape and dtype, tables as tables, errors with the worker's frames named as IPython
names them."""

from __future__ import annotations

import pathlib
import struct
import zlib

import ipywidgets as widgets
import numpy as np
from test_widgets_fields import PNG

import sieve_jupyter as sieve
from sieve_jupyter._errors import RemoteError, RemoteTraceback
from sieve_jupyter.jupyter._tracebacks import error_text
from sieve_jupyter.jupyter.widgets._media import find_boxes, image_size
from sieve_jupyter.jupyter.widgets._render import render_error, render_value


def test_image_bytes_show_as_an_image() -> None:
    shown = render_value(PNG)
    assert isinstance(shown, widgets.Image)
    assert shown.format == "png" and shown.value == PNG


def test_uint8_array_shows_as_a_valid_png() -> None:
    array = np.zeros((4, 5, 3), dtype=np.uint8)
    array[..., 0] = 255
    shown = render_value(array)
    assert isinstance(shown, widgets.Image)
    data = bytes(shown.value)
    assert data.startswith(b"\x89PNG")
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (5, 4)
    idat_len = struct.unpack(">I", data[33:37])[0]
    rows = zlib.decompress(data[41 : 41 + idat_len])
    assert rows[:4] == b"\x00\xff\x00\x00"  # filter byte, then the first red pixel


def test_image_file_result_shows_the_image(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(PNG)
    shown = render_value(sieve.File(str(path)))
    assert isinstance(shown, widgets.Image) and shown.value == PNG


def test_other_file_results_are_named(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"123")
    shown = render_value(sieve.File(str(path)))
    assert isinstance(shown, widgets.HTML) and "out.bin" in shown.value and "3 bytes" in shown.value


def test_text_none_and_numbers_read_as_they_are() -> None:
    text = render_value("a <b> & 'c'")
    assert isinstance(text, widgets.HTML) and "a &lt;b&gt; &amp; 'c'" in text.value
    assert ">None</pre>" in render_value(None).value
    assert ">0.25</pre>" in render_value(0.25).value


def test_dicts_and_lists_go_to_the_json_viewer() -> None:
    value = {"labels": ["cat", "dog"], "score": 0.9}
    shown = render_value(value)
    assert isinstance(shown, widgets.Output)
    (output,) = shown.outputs
    assert output["data"]["application/json"] == value
    assert '"labels": [\n    "cat",' in output["data"]["text/plain"]  # for other frontends
    assert render_value([1, 2]).outputs[0]["data"]["application/json"] == [1, 2]


def test_arrays_show_shape_dtype_and_a_preview() -> None:
    shown = render_value(np.arange(10_000, dtype=np.float32).reshape(100, 100))
    assert isinstance(shown, widgets.HTML)
    assert "ndarray" in shown.value and "shape (100, 100) · float32" in shown.value
    assert "..." in shown.value and len(shown.value) < 3000  # a preview, not 10,000 numbers


def _png(width: int, height: int) -> bytes:
    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + tag + body + crc

    rows = b"".join(b"\x00" + b"\x80" * 3 * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_boxes_are_drawn_over_the_input_image(tmp_path: pathlib.Path) -> None:
    picture = tmp_path / "street.png"
    picture.write_bytes(_png(320, 200))
    detections = {
        "boxes": [[10, 20, 110, 120], [200, 50, 300, 190]],
        "labels": ["car", "bus"],
        "scores": [0.91, 0.5],
    }
    shown = render_value(detections, inputs={"image": sieve.Image(str(picture)), "k": 3})
    assert isinstance(shown, widgets.VBox)
    drawn, viewer = shown.children
    assert 'viewBox="0 0 320 200"' in drawn.value
    assert drawn.value.count("<rect") == 4  # two boxes, each with its label tag
    assert 'x="200" y="50" width="100" height="140"' in drawn.value
    assert "car 0.91" in drawn.value and "data:image/png;base64," in drawn.value
    assert viewer.outputs[0]["data"]["application/json"] == detections
    # without an image among the inputs, the boxes are plain JSON
    assert isinstance(render_value(detections, inputs={"k": 3}), widgets.Output)


def test_box_shapes_and_image_sizes_are_read() -> None:
    assert find_boxes({"boxes": [{"box": [0, 0, 1, 1], "label": "x", "score": 0.5}]}) == [
        ([0.0, 0.0, 1.0, 1.0], "x 0.50")
    ]
    assert find_boxes({"boxes": [[0, 0, 1]]}) is None  # not 4 numbers: not boxes
    assert find_boxes({"boxes": []}) is None and find_boxes([1, 2]) is None
    assert image_size(_png(7, 3)) == (7, 3)
    gif = b"GIF89a" + struct.pack("<HH", 12, 34) + b"\x00" * 10
    assert image_size(gif) == (12, 34)


def test_objects_with_a_table_repr_show_the_table() -> None:
    class Frame:
        def _repr_html_(self) -> str:
            return "<table><tr><td>42</td></tr></table>"

    shown = render_value(Frame())
    assert isinstance(shown, widgets.Output)
    assert shown.outputs[0]["data"]["text/html"] == "<table><tr><td>42</td></tr></table>"


def test_an_error_shows_the_worker_frames_as_ipython_names_them() -> None:
    exc = ValueError("bad input")
    cause = RemoteTraceback('Traceback ...\n  File "/work/predict.py", line 3, in predict\n')
    cause.frames = [("/work/predict.py", 3, "predict", "raise ValueError('bad input')")]  # type: ignore[attr-defined]
    cause.chain = [
        {
            "type_name": "builtins.KeyError",
            "message": "'x'",
            "relation": "context",  # type: ignore[attr-defined]
            "frames": [("/work/predict.py", 2, "predict", "table['x']")],
        }
    ]
    exc.__cause__ = cause
    text = error_text(exc)
    assert text.splitlines() == [
        "File /work/predict.py:2, in predict",
        "    table['x']",
        "KeyError: 'x'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "File /work/predict.py:3, in predict",
        "    raise ValueError('bad input')",
        "ValueError: bad input",
    ]
    shown = render_error(exc)
    assert "ValueError: bad input" in shown.value and "/work/predict.py:3" in shown.value
    # a type the kernel could not rebuild keeps its own name
    remote = RemoteError("mylib.CustomError", "exploded", "Traceback: in mylib\n")
    assert error_text(remote) == "mylib.CustomError: exploded"
