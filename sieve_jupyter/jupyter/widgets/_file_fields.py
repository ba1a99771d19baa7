"""Fields for values a form cannot type in: files (upload or path) and other Python objects.

Uploaded bytes are written once to a temporary file, passed as the declared type; a Python
type the schema only names (`x-python-type`) is entered as an expression of the notebook.
"""

from __future__ import annotations

import datetime
import html
import os
import pathlib
import shutil
import tempfile
import weakref
from typing import Any

import ipywidgets as widgets

from sieve_jupyter.jupyter.widgets._field_base import EMPTY, OMIT, Field
from sieve_jupyter.jupyter.widgets._schema import FormInputError

__all__ = ["ExpressionField", "FileField"]

_MEDIA_ACCEPT = {"Image": "image/*", "Video": "video/*", "Audio": "audio/*"}


class FileField(Field):
    """`sieve.File`/media/`pathlib.Path`/`bytes`: an upload (with a preview for images) or a path.

    Uploaded bytes are written once to a temporary file, which is passed as the declared type
    (`sieve.File(path)`, `sieve.Image(path)`, `pathlib.Path`, or the bytes themselves).
    """

    kind = "file"
    required_hint = "upload a file or enter a path or URL"

    def _build(self) -> widgets.DOMWidget:
        media = str(self.schema.get("x-sieve-type") or "")
        python_type = str(self.schema.get("x-python-type") or "")
        self.is_image = media == "Image" or ("PIL" in python_type and "Image" in python_type)
        accept = "image/*" if self.is_image else _MEDIA_ACCEPT.get(media, "")
        self.upload = widgets.FileUpload(
            accept=accept, multiple=False, description="Upload", layout=widgets.Layout(width="auto")
        )
        self.path_text = widgets.Text(
            placeholder="or a local path or URL", layout=widgets.Layout(width="240px")
        )
        self.file_name = widgets.HTML(layout=widgets.Layout(display="none"))
        self.file_name.add_class("sieve-caption")
        self.preview = widgets.Image(
            layout=widgets.Layout(
                max_width="160px", max_height="120px", align_self="flex-start", display="none"
            )
        )
        self.upload.observe(self._on_upload, names="value")
        self.path_text.observe(self._on_path, names="value")
        self._saved: tuple[tuple[str, int], str] | None = None
        return self.upload

    def _row_controls(self) -> list[widgets.Widget]:
        row = widgets.HBox(
            [self.upload, self.path_text, self.file_name],
            layout=widgets.Layout(align_items="center"),
        )
        return [widgets.VBox([row, self.preview])]

    def _watched(self) -> list[widgets.Widget]:
        return [self.upload, self.path_text]

    def _on_upload(self, change: dict[str, Any]) -> None:
        uploads = change["new"]
        if uploads:
            item = uploads[0]
            name = html.escape(str(item.get("name") or "upload"))
            self.file_name.value = f"{name} · {_size(len(bytes(item['content'])))}"
            self.file_name.layout.display = ""
            if self.path_text.value:
                self.path_text.value = ""  # the upload is what will be sent
        else:
            self.file_name.value = ""
            self.file_name.layout.display = "none"
        if self.is_image and uploads:
            self.preview.value = bytes(uploads[0]["content"])
            self.preview.layout.display = ""
        else:
            self.preview.layout.display = "none"

    def _on_path(self, change: dict[str, Any]) -> None:
        if change["new"] and self.upload.value:
            self.upload.value = ()  # a path typed in replaces the upload

    def _read(self) -> Any:
        path = self._uploaded_path() or self.path_text.value.strip()
        if not path:
            return EMPTY
        return path

    def _uploaded_path(self) -> str | None:
        uploads = self.upload.value
        if not uploads:
            return None
        item = uploads[0]
        content = bytes(item["content"])
        key = (str(item["name"]), len(content))
        if self._saved is None or self._saved[0] != key:
            folder = tempfile.mkdtemp(prefix="sieve-upload-")
            # Jobs pushed with this file may still be waiting to run: it goes with the field
            # (once its form is closed and collected) or at interpreter exit, whichever is first.
            weakref.finalize(self, shutil.rmtree, folder, True)
            target = os.path.join(folder, os.path.basename(str(item["name"])) or "upload")
            with open(target, "wb") as out:
                out.write(content)
            self._saved = (key, target)
        return self._saved[1]

    def _clear(self) -> None:
        self.upload.value = ()
        self.path_text.value = ""

    def _write(self, value: Any) -> None:
        if isinstance(value, (bytes, bytearray, memoryview)):
            self.upload.value = (
                {
                    "name": "upload",
                    "type": "",
                    "size": len(value),
                    "content": memoryview(bytes(value)),
                    "last_modified": datetime.datetime.now(datetime.timezone.utc),
                },
            )
            return
        self.path_text.value = (
            os.fspath(value) if not hasattr(value, "_source") else str(value._source)
        )

    def _check(self, value: Any) -> list[str]:
        is_url = "://" in value
        if not is_url and not os.path.exists(value):
            return [f"there is no file at {value!r}"]
        local_only = self.schema.get("format") in ("path", "file-path", "binary") or (
            self.schema.get("x-sieve-type") == "Path"
        )
        if is_url and local_only:
            return ["takes a local file, not a URL"]
        return []

    def _fix_hint(self) -> str:
        return "upload a file or enter an existing path or URL"

    def value(self) -> Any:
        raw = super().value()
        if raw is None or raw is OMIT:
            return raw
        return self._convert(str(raw))

    def _convert(self, path: str) -> Any:
        fmt = self.schema.get("format")
        media = self.schema.get("x-sieve-type")
        if fmt == "binary":
            with open(path, "rb") as handle:
                return handle.read()
        if fmt in ("path", "file-path") or media == "Path":
            return pathlib.Path(path)
        if media:
            from sieve_jupyter import runtime

            cls = getattr(runtime, str(media), runtime.File)
            return cls(path)
        if self.is_image:
            try:
                from PIL import Image  # only when the function asks for a PIL image
            except ImportError as exc:
                raise FormInputError(
                    self.name, f"{self.name} needs Pillow to open the image", "pip install pillow"
                ) from exc
            return Image.open(path)
        return path


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count / (1024 * 1024):.1f} MB"


class ExpressionField(Field):
    """A Python type the form cannot edit (an array, a model object): a notebook expression."""

    kind = "expression"
    required_hint = "enter a Python expression, e.g. a variable name"

    def _build(self) -> widgets.DOMWidget:
        return widgets.Text(
            placeholder="a Python expression, e.g. a variable name",
            layout=widgets.Layout(width="100%", max_width="420px"),
        )

    def _read(self) -> Any:
        source = self.control.value.strip()
        if not source:
            return EMPTY
        namespace: dict[str, Any] = {}
        try:
            from IPython.core.getipython import get_ipython

            shell = get_ipython()
            if shell is not None:
                namespace = shell.user_ns
        except ImportError:  # pragma: no cover - forms only exist inside IPython
            pass
        try:
            return eval(source, namespace)  # noqa: S307 - the user's own expression, in their kernel
        except Exception as exc:
            raise FormInputError(
                self.name,
                f"{self.name}: {source!r} failed ({type(exc).__name__}: {exc})",
                "enter an expression that evaluates in this notebook, e.g. a variable name",
            ) from exc

    def _write(self, value: Any) -> None:
        self.control.value = value if isinstance(value, str) else repr(value)

    def _check(self, value: Any) -> list[str]:
        return []  # only the worker knows whether an arbitrary object fits
