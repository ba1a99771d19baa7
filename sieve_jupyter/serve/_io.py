"""Inputs in, outputs out: schema validation with Cog's 422 detail, file inputs (data URLs,
URLs, multipart uploads) and file outputs (data URLs, or links to ``GET /files/{id}``).

Nothing received over HTTP is unpickled: inputs are JSON, files are bytes written to a private
folder and handed to the function as `sieve.File`s. A plain path is refused as a file input (it
would let a caller read the server's own files).
"""

from __future__ import annotations

import mimetypes
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sieve_jupyter.runtime import Audio, File, Image, Video
from sieve_jupyter.spec import FILE_FORMAT, FunctionSpec
from sieve_jupyter.spec._dataurl import decode_data_url, file_data_url
from sieve_jupyter.spec._schema_check import SchemaCheck, SchemaProblem

__all__ = ["FileStore", "InputError422", "InputPlan", "decode_data_url", "encode_output"]

_FILE_TYPES: dict[str, type[File]] = {"File": File, "Image": Image, "Video": Video, "Audio": Audio}


class InputError422(Exception):
    """An input that does not fit: becomes a 422 with Cog's ``detail`` list."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        self.detail = detail
        super().__init__(detail[0]["msg"] if detail else "invalid input")


def _detail(loc: list[Any], msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


@dataclass
class InputPlan:
    """How one function's inputs are checked and passed: the schema's validator, which inputs
    are files, which go by position."""

    spec: FunctionSpec
    validator: SchemaCheck | None = None
    #: input name -> (sieve type name, is a list of files)
    files: dict[str, tuple[str, bool]] = field(default_factory=dict)
    positional: tuple[str, ...] = ()
    var_positional: str | None = None
    #: `bytes` inputs (``format: binary``): a data URL is decoded here, a bad one is a 422
    binary: tuple[str, ...] = ()

    @classmethod
    def for_spec(cls, spec: FunctionSpec) -> InputPlan:
        schema = spec.inputs
        plan = cls(spec, validator=SchemaCheck(schema))
        for name, prop in schema.get("properties", {}).items():
            for candidate, many in ((prop, False), (prop.get("items") or {}, True)):
                options = [candidate, *candidate.get("anyOf", [])]
                for option in options:
                    if isinstance(option, dict) and option.get("format") == FILE_FORMAT:
                        plan.files[name] = (option.get("x-sieve-type", "File"), many)
        plan.binary = tuple(
            name
            for name, prop in schema.get("properties", {}).items()
            if isinstance(prop, dict) and prop.get("format") == "binary"
        )
        plan.positional = tuple(schema.get("x-positional-only", ()))
        var = schema.get("x-var-positional")
        plan.var_positional = var["name"] if isinstance(var, dict) else None
        return plan

    def check(self, value: Any) -> dict[str, Any]:
        """Validate an ``input`` object against the schema.

        Raises:
            InputError422: naming each field at fault (Cog's ``detail`` entries).
        """
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise InputError422(
                [
                    _detail(
                        ["body", "input"],
                        f"input must be a JSON object, got {type(value).__name__}",
                        "type_error",
                    )
                ]
            )
        given = self._sieve_file_objects(value)
        schema_value = given
        if self.var_positional is not None and self.var_positional in given:
            schema_value = {k: v for k, v in given.items() if k != self.var_positional}
            if not isinstance(given[self.var_positional], list):
                raise InputError422(
                    [
                        _detail(
                            ["body", "input", self.var_positional],
                            "must be a list (the *args)",
                            "type_error",
                        )
                    ]
                )
        assert self.validator is not None
        problems = self.validator.problems(schema_value)
        if problems:
            raise InputError422([self._describe(p) for p in problems])
        return given

    def _sieve_file_objects(self, value: dict[str, Any]) -> dict[str, Any]:
        """`value` with each file input given as Sieve's API gives one, ``{"url": "..."}``,
        replaced by its URL: a request written for Sieve's push API works here unchanged."""
        out = None
        for name, (_, many) in self.files.items():
            item = value.get(name)
            if many and isinstance(item, list):
                url = [_url_of(entry) for entry in item]
                changed = any(u is not e for u, e in zip(url, item, strict=True))
            else:
                url = _url_of(item)
                changed = url is not item
            if changed:
                out = out if out is not None else dict(value)
                out[name] = url
        return value if out is None else out

    def decode_binary(self, value: dict[str, Any]) -> dict[str, Any]:
        """`value` with its `bytes` inputs that came as data URLs decoded (other text is the
        worker's to read as UTF-8).

        Raises:
            InputError422: a data URL that does not decode.
        """
        decoded = None
        for name in self.binary:
            item = value.get(name)
            if isinstance(item, str) and item.startswith("data:"):
                try:
                    data = decode_data_url(item)[1]
                except ValueError as exc:
                    raise InputError422(
                        [_detail(["body", "input", name], f"not a valid data URL: {exc}")]
                    ) from None
                decoded = decoded if decoded is not None else dict(value)
                decoded[name] = data
        return value if decoded is None else decoded

    def _describe(self, problem: SchemaProblem) -> dict[str, Any]:
        loc: list[Any] = ["body", "input", *problem.path]
        if problem.rule == "required":
            return _detail(loc, "Field required", "missing")
        if problem.rule == "additionalProperties":
            allowed = ", ".join(sorted(self.spec.inputs.get("properties", {}))) or "none"
            return _detail(
                loc, f"Extra inputs are not permitted (inputs: {allowed})", "extra_forbidden"
            )
        return _detail(loc, problem.message)

    def call(self, value: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's positional and keyword arguments for an input object."""
        kwargs = dict(value)
        args = [kwargs.pop(name) for name in self.positional if name in kwargs]
        if self.var_positional is not None:
            args += list(kwargs.pop(self.var_positional, []))
        return tuple(args), kwargs


def _url_of(item: Any) -> Any:
    """The URL of a Sieve file object (``{"url": "https://..."}``), else `item` itself."""
    if isinstance(item, dict) and len(item) == 1 and isinstance(item.get("url"), str):
        return item["url"]
    return item


class Uploads:
    """The private folder of one prediction's input files, removed when it is done."""

    def __init__(self, root: Callable[[], Path]) -> None:
        self.root = root
        self.folder: Path | None = None

    def save(self, data: bytes, media_type: str, filename: str = "") -> str:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="upload-", dir=self.root()))
        suffix = Path(filename).suffix or (mimetypes.guess_extension(media_type) or "")
        name = Path(filename).name if filename else f"input{suffix}"
        path = self.folder / f"{secrets.token_hex(4)}-{name}"
        path.write_bytes(data)
        return str(path)

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def to_files(
    plan: InputPlan,
    value: dict[str, Any],
    uploads: Uploads,
    uploaded: dict[str, File] | None = None,
) -> dict[str, Any]:
    """Replace file inputs by `sieve.File`s: data URLs are saved, http(s) URLs passed on.

    Raises:
        InputError422: a file input that is none of those (a path on the server is refused).
    """
    if not plan.files:
        return value
    out = dict(value)
    for name, (type_name, many) in plan.files.items():
        if name not in value or value[name] is None:
            continue
        cls = _FILE_TYPES.get(type_name, File)
        if uploaded and name in uploaded:
            out[name] = uploaded[name]
            continue
        items = value[name] if many and isinstance(value[name], list) else [value[name]]
        files = [
            _one_file(cls, name, item, uploads, index if many else None)
            for index, item in enumerate(items)
        ]
        out[name] = files if many and isinstance(value[name], list) else files[0]
    return out


def _one_file(cls: type[File], name: str, item: Any, uploads: Uploads, index: int | None) -> File:
    loc: list[Any] = ["body", "input", name] + ([index] if index is not None else [])
    if not isinstance(item, str):
        raise InputError422([_detail(loc, "a file must be a data URL or an http(s) URL")])
    if item.startswith("data:"):
        try:
            media_type, data = decode_data_url(item)
        except ValueError as exc:
            raise InputError422([_detail(loc, f"bad data URL: {exc}")]) from None
        return cls(uploads.save(data, media_type))
    if item.startswith(("http://", "https://")):
        return cls(url=item)
    raise InputError422(
        [
            _detail(
                loc,
                "a file must be a data URL (data:<type>;base64,...), an http(s) URL or a "
                "multipart upload; paths on the server are not accepted",
            )
        ]
    )


class FileStore:
    """Output files too large to inline, served at ``GET /files/{id}`` for a while."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._files: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def add(self, path: str) -> str:
        file_id = secrets.token_urlsafe(16)
        with self._lock:
            now = time.time()
            self._files = {k: v for k, v in self._files.items() if v[1] > now}
            self._files[file_id] = (path, now + self.keep_seconds)
        return file_id

    def path(self, file_id: str) -> str | None:
        entry = self._files.get(file_id)
        if entry is None or entry[1] < time.time() or not os.path.isfile(entry[0]):
            return None
        return entry[0]


def encode_output(
    value: Any, *, inline_limit: int, store: FileStore, base_url: Callable[[], str]
) -> Any:
    """A result as JSON: each `sieve.File` becomes a data URL (up to `inline_limit` bytes) or
    a link to ``GET /files/{id}``; a URL-backed file stays its URL."""
    if isinstance(value, File):
        if value.url is not None and value._local is None:
            return value.url
        path = value.path
        if os.path.getsize(path) <= inline_limit:
            return file_data_url(path)
        return f"{base_url()}files/{store.add(path)}"
    if isinstance(value, list):
        return [
            encode_output(v, inline_limit=inline_limit, store=store, base_url=base_url)
            for v in value
        ]
    if isinstance(value, dict):
        return {
            k: encode_output(v, inline_limit=inline_limit, store=store, base_url=base_url)
            for k, v in value.items()
        }
    return value


def output_encoder(
    inline_limit: int, store: FileStore, base_url: Callable[[], str]
) -> Callable[[Any], Any]:
    def encode(value: Any) -> Any:
        if isinstance(value, (int, float, str, bool, type(None))):
            return value
        return encode_output(value, inline_limit=inline_limit, store=store, base_url=base_url)

    return encode
