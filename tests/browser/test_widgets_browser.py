"""The form and the progress widget rendered by a real JupyterLab in Chromium, driven by clicks."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

SETUP = """
import sieve_jupyter as sieve
from sieve_jupyter.jupyter.widgets import form, progress

@sieve.function(name="browser-adder")
def add(x: int, y: int = 2, note: str = "hi") -> dict:
    \"\"\"Add two numbers.

    Args:
        x: the first number
    \"\"\"
    return {"sum": x + y, "note": note}
"""

SCREENSHOTS = os.environ.get("SIEVE_SCREENSHOTS")


def _png(width: int = 96, height: int = 64) -> bytes:
    """A small solid orange PNG, made with the standard library."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + tag + body + crc

    rows = b"".join(b"\x00" + b"\xff\x8c\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = _png()


def _screenshot(widget: Any, tmp_path: Path, name: str) -> Path:
    """An image of the widget itself (set SIEVE_SCREENSHOTS to keep it for a look)."""
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(path))
    return path


def test_form_submits_from_the_browser_and_shows_the_result(notebook: Any, tmp_path: Path) -> None:
    notebook.run(SETUP)
    notebook.run("f = form(add)\nf")
    form = notebook.page.locator(".sieve-form").last
    form.wait_for()
    assert "browser-adder" in form.inner_text()
    assert "the first number" in form.inner_text()  # docstring as help text
    fields = form.locator(".sieve-field")
    assert fields.count() == 3
    y_box = fields.nth(1).locator("input").first
    assert y_box.input_value() == "2"  # default prefilled

    # an empty required field: nothing is pushed, the field says so
    form.get_by_role("button", name="Submit").click()
    fields.nth(0).get_by_text("required").wait_for()
    assert notebook.run("print(len(f.futures))").strip() == "0"

    x_box = fields.nth(0).locator("input").first
    x_box.fill("40")
    x_box.press("Enter")  # number boxes sync on change; the sync is sent before the click
    form.get_by_role("button", name="Submit").click()
    form.get_by_text('"sum": 42').wait_for()
    assert "finished" in form.inner_text()
    _screenshot(form, tmp_path, "widgets-form")


def test_progress_of_many_jobs_renders_and_ends_finished(notebook: Any, tmp_path: Path) -> None:
    notebook.run(SETUP)
    notebook.run(
        "import time\n"
        "@sieve.function(name='browser-nap')\n"
        "def nap(i: int) -> int:\n"
        "    time.sleep(0.01)\n"
        "    print(f'napping {i}')\n"
        "    if i % 97 == 13:\n"
        "        raise ValueError(f'odd input {i}')\n"
        "    return i\n"
        "futures = [nap.push(i) for i in range(300)] + [add.push(i) for i in range(50)]\n"
        "w = progress(futures)\n"
        "w"
    )
    widget = notebook.page.locator(".sieve-progress").last
    widget.wait_for()
    widget.get_by_text("300/300").wait_for()
    widget.get_by_text("50/50").wait_for()
    text = widget.inner_text()
    assert "browser-nap" in text and "browser-adder" in text
    assert "3 error" in text  # i = 13, 110, 207
    assert "odd input 13" in text
    widget.get_by_text("traceback").first.click()  # the worker's traceback, folded by default
    widget.get_by_text(", in nap").first.wait_for()
    # pick a job: its logs show
    widget.get_by_text("Jobs: logs and outputs").click()
    picker = widget.locator("select").first
    first = picker.locator("option").first.inner_text()
    assert "browser-nap-14" in first and "error" in first  # failed jobs are listed first
    picker.select_option(index=0)
    widget.get_by_text("napping 13").wait_for()
    _screenshot(widget, tmp_path, "widgets-progress")


def test_image_upload_previews_and_the_result_shows_as_an_image(
    notebook: Any, tmp_path: Path
) -> None:
    picture = tmp_path / "dot.png"
    picture.write_bytes(PNG)
    notebook.run(SETUP)
    notebook.run(
        "@sieve.function(name='browser-echo-image')\n"
        "def echo_image(picture: sieve.Image) -> bytes:\n"
        "    with open(picture.path, 'rb') as handle:\n"
        "        return handle.read()\n"
        "g = form(echo_image)\n"
        "g"
    )
    form = notebook.page.locator(".sieve-form").last
    form.wait_for()
    with notebook.page.expect_file_chooser() as chooser:
        form.get_by_role("button", name="Upload").click()
    chooser.value.set_files(str(picture))
    preview = form.locator(".sieve-field img")
    preview.wait_for()  # the upload shows before anything is submitted
    form.get_by_role("button", name="Submit").click()
    form.get_by_text("finished").wait_for()
    result = form.locator(".sieve-progress img")
    result.wait_for()
    assert result.get_attribute("src", timeout=5_000) is not None
    assert (
        notebook.run(
            "print(bytes(g.result_widget.value) == bytes(g.fields['picture'].preview.value))"
        ).strip()
        == "True"
    )
    _screenshot(form.locator(".sieve-progress"), tmp_path, "widgets-upload")
