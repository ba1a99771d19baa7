"""Rich result rendering: images as images, tables as tables, text and JSON readably, errors
with the worker's traceback."""

from __future__ import annotations

import pathlib
import struct
import zlib

import ipywidgets as widgets
import numpy as np
from test_widgets_fields import PNG

import sieve_jupyter as sieve
from sieve_jupyter._errors import RemoteError, RemoteTraceback
from sieve_jupyter.jupyter.widgets._render import error_parts, render_error, render_value


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
    rows = zlib.decompress(data[41:41 + idat_len])
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


def test_text_and_json_are_readable() -> None:
    text = render_value("a <b> & 'c'")
    assert isinstance(text, widgets.HTML) and "a &lt;b&gt; &amp; 'c'" in text.value
    data = render_value({"labels": ["cat", "dog"], "score": 0.9})
    assert '"labels": [\n    "cat",' in data.value


def test_objects_with_a_table_repr_show_the_table() -> None:
    class Frame:
        def _repr_html_(self) -> str:
            return "<table><tr><td>42</td></tr></table>"

    shown = render_value(Frame())
    assert isinstance(shown, widgets.Output)
    assert shown.outputs[0]["data"]["text/html"] == "<table><tr><td>42</td></tr></table>"


def test_error_shows_the_remote_traceback() -> None:
    exc = ValueError("bad input")
    exc.__cause__ = RemoteTraceback('File "worker.py", line 3, in predict\n')
    name, message, tb = error_parts(exc)
    assert (name, message) == ("ValueError", "bad input")
    assert "worker.py" in tb
    remote = RemoteError("mylib.CustomError", "exploded", "Traceback: in mylib\n")
    assert error_parts(remote) == ("mylib.CustomError", "exploded", "Traceback: in mylib\n")
    shown = render_error(remote)
    assert "mylib.CustomError" in shown.value and "Traceback: in mylib" in shown.value
