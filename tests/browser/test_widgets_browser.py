"""The form, the progress widget, results and tracebacks rendered by a real JupyterLab in
Chromium, driven by clicks; each state is also saved as a screenshot (light and dark theme)."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

Shoot = Callable[[Any, str], None]

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

DETECTOR = """
from typing import Annotated, Literal
from pydantic import Field

@sieve.function(name="browser-detector")
def detect(
    image: sieve.Image,
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5,
    max_boxes: int = 10,
    labels: list[str] | None = None,
    mode: Literal["fast", "accurate"] = "fast",
    draw: bool = True,
) -> dict:
    \"\"\"Find objects in an image.

    Returns a box per object, as [x1, y1, x2, y2] in pixels.

    Args:
        image: the picture to look at
        threshold: the lowest score a box may have
        max_boxes: at most this many boxes
        labels: only these classes (all when empty)
    \"\"\"
    return {"boxes": [[30, 40, 150, 170], [180, 30, 300, 120]], "labels": ["cat", "dog"],
            "scores": [0.93, 0.71]}
"""

#: a 6-field form used to be ~690 px tall; the aim is half
MAX_FORM_HEIGHT = 345


def _png(width: int = 96, height: int = 64) -> bytes:
    """A small PNG shading from orange to blue, made with the standard library."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + tag + body + crc

    rows = b"".join(
        b"\x00"
        + b"".join(
            bytes((255 - x * 200 // width, 140, 40 + y * 200 // height)) for x in range(width)
        )
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = _png()


def _upload(notebook: Any, form: Any, path: Path) -> None:
    with notebook.page.expect_file_chooser() as chooser:
        form.get_by_role("button", name="Upload").click()
    chooser.value.set_files(str(path))


def test_form_submits_from_the_browser_and_shows_the_result(
    notebook: Any, screenshot: Shoot
) -> None:
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

    # an empty required field: nothing is pushed, the field says so and what to do
    form.get_by_role("button", name="Submit").click()
    fields.nth(0).get_by_text("x is required: enter a whole number").wait_for()
    assert notebook.run("print(len(f.futures))").strip() == "0"

    x_box = fields.nth(0).locator("input").first
    x_box.fill("40")
    x_box.press("Enter")  # text boxes sync on change; the sync is sent before the click
    form.get_by_role("button", name="Submit").click()
    form.locator(".sieve-progress .jp-RenderedJSON").wait_for()  # JupyterLab's JSON viewer
    form.get_by_text("42").first.wait_for()
    assert "finished" in form.inner_text() and "Result" in form.inner_text().title()
    screenshot(form, "form-json-result")


def test_a_six_field_form_is_compact_and_its_messages_say_what_to_do(
    notebook: Any, screenshot: Shoot, tmp_path: Path
) -> None:
    notebook.run(SETUP)
    notebook.run(DETECTOR + "\nd = form(detect)\nd")
    form = notebook.page.locator(".sieve-form").last
    form.wait_for()
    assert form.locator(".sieve-field").count() == 6
    screenshot(form, "form-empty")
    height = form.bounding_box()["height"]  # a layout measurement
    assert height <= MAX_FORM_HEIGHT, height
    assert "Find objects in an image." in form.inner_text()
    assert form.locator("details.sieve-signature:not([open])").count() == 1  # folded away

    fields = form.locator(".sieve-field")
    image, max_boxes = fields.nth(0), fields.nth(2)
    max_boxes.locator("input").first.fill("ten")
    max_boxes.locator("input").first.press("Enter")
    form.get_by_role("button", name="Submit").click()
    image.get_by_text("image is required: upload a file or enter a path or URL").wait_for()
    max_boxes.get_by_text("'ten' is not a whole number").wait_for()
    form.get_by_text("Fix the marked inputs: image, max_boxes").wait_for()
    screenshot(form, "form-errors")

    max_boxes.get_by_role("button").nth(1).click()  # a step button: from nothing valid yet
    max_boxes.locator("input").first.fill("12")
    max_boxes.locator("input").first.press("Enter")
    max_boxes.get_by_text("'ten' is not a whole number").wait_for(state="detached")
    picture = tmp_path / "street.png"
    picture.write_bytes(_png(320, 200))
    _upload(notebook, form, picture)
    image.get_by_text("street.png · ").wait_for()  # the upload shows its name and size
    image.get_by_text("image is required").wait_for(state="detached")
    form.get_by_text("Fix the marked").wait_for(state="detached")

    form.get_by_role("button", name="Submit").click()
    boxes = form.locator(".sieve-progress .sieve-boxes")
    boxes.wait_for()
    assert boxes.locator("svg rect[fill=none]").count() == 2  # drawn over the uploaded image
    assert boxes.locator("svg text").first.text_content() == "cat 0.93"
    assert boxes.locator("img").get_attribute("src", timeout=5_000).startswith("data:image/png")
    form.locator(".sieve-progress .jp-RenderedJSON").wait_for()
    screenshot(form, "form-boxes-result")


def test_progress_of_many_jobs_moves_then_ends_with_its_errors_folded(
    notebook: Any, screenshot: Shoot
) -> None:
    gate = notebook.lab.root / "open-the-gate"
    notebook.run(SETUP)
    notebook.run(
        "import os, time\n"
        "@sieve.function(name='browser-nap')\n"
        "def nap(i: int) -> int:\n"
        "    time.sleep(0.01)\n"
        "    print(f'napping {i}')\n"
        "    if i % 97 == 13:\n"
        "        raise ValueError(f'odd input {i}')\n"
        "    return i\n"
        "@sieve.function(name='browser-gate')\n"
        "def gate(path: str) -> str:\n"
        "    while not os.path.exists(path):  # runs until the test opens the gate\n"
        "        time.sleep(0.05)\n"
        "    return path\n"
        "futures = [nap.push(i) for i in range(300)] + [add.push(i) for i in range(50)]\n"
        f"slow = gate.push({str(gate)!r})\n"
        "w = progress(futures + [slow])\n"
        "w"
    )
    widget = notebook.page.locator(".sieve-progress").last
    widget.wait_for()
    widget.get_by_text("300/300").wait_for()
    widget.locator(".sieve-stripes").first.wait_for()  # while a job runs, the bar moves
    screenshot(widget, "progress-running")
    gate.touch()
    widget.get_by_text("50/50").wait_for()
    widget.get_by_text("1/1").wait_for()
    assert widget.locator(".sieve-stripes").count() == 0  # done: nothing moves any more
    text = widget.inner_text()
    assert "browser-nap" in text and "browser-adder" in text
    assert "3 errors" in text  # i = 13, 110, 207
    assert "error(s)" not in text
    widget.get_by_text("browser-nap #").first.click()  # an error's traceback, folded by default
    widget.get_by_text(", in nap").first.wait_for()
    assert "Cell In[" in widget.inner_text()
    assert "sieve_jupyter/" not in widget.inner_text()
    # the jobs' prints live in the widget: one line says so, the picker has them
    widget.get_by_text("printed output: pick one under Jobs").wait_for()
    widget.get_by_role("button", name="Jobs: logs and outputs").click()
    picker = widget.locator("select").first
    first = picker.locator("option").first.inner_text().replace("\xa0", " ")
    assert "browser-nap #" in first and "error" in first  # failed jobs are listed first
    picker.select_option(index=0)
    widget.get_by_text("napping 13").wait_for()
    cell = notebook.page.locator(".jp-CodeCell").last
    assert cell.locator("[data-mime-type='application/vnd.jupyter.stdout']").count() == 0
    screenshot(widget, "progress-done")


def test_image_upload_previews_and_the_result_shows_as_an_image(
    notebook: Any, tmp_path: Path, screenshot: Shoot
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
    _upload(notebook, form, picture)
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
    screenshot(form, "form-image-result")


def test_a_remote_error_reads_like_a_local_one_in_the_cell(
    notebook: Any, screenshot: Shoot
) -> None:
    notebook.run(
        "import sieve_jupyter as sieve\n"
        "@sieve.function(name='browser-resize')\n"
        "def resize(i: int) -> int:\n"
        "    if i == 3:\n"
        "        raise ValueError(f'odd input {i}')\n"
        "    return i"
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", notebook.run("resize.run(3)", allow_error=True))
    assert "Cell In[1], line 5, in resize" in text
    assert "raise ValueError(f'odd input {i}')" in text
    assert "sieve_jupyter/" not in text and "concurrent/futures" not in text
    cell = notebook.page.locator(".jp-CodeCell").last
    cell.get_by_text("ValueError: odd input 3").wait_for()
    screenshot(cell, "traceback")


def test_a_slow_start_shows_one_notice_above_its_setup_output(
    notebook: Any, screenshot: Shoot
) -> None:
    notebook.run(
        "import time\nimport sieve_jupyter as sieve\n"
        "@sieve.Model(name='browser-slow')\n"
        "class Slow:\n"
        "    def __setup__(self):\n"
        "        print('loading weights')\n"
        "        time.sleep(1.5)\n"
        "        print('weights loaded')\n"
        "    def __predict__(self, x: int) -> int:\n"
        "        return x"
    )
    text = notebook.run("futures = [Slow.push(i) for i in range(20)]\nprint(Slow.run(7))")
    assert text.count("browser-slow: worker ready after") == 1, text
    assert "loading weights\nweights loaded\n" in text
    assert text.index("worker ready") < text.index("loading weights")
    screenshot(notebook.page.locator(".jp-CodeCell").last, "startup-notice")
