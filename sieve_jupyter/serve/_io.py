"""Inputs in, outputs out: schema validation with Cog's 422 detail, file inputs (data URLs,
URLs, multipart uploads) and file outputs (data URLs, or links to ``GET /files/{id}``).

Nothing received over HTTP is unpickled: inputs are JSON, files are bytes written to a private
folder and handed to the function as `sieve.File`s. A plain path is refused as a file input (it
would let a caller read the server's own files).
"""

from __future__ import annotations

import base64
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
from sieve_jupyter.spec._dataurl import decode_data_url

__all__ = ["FileStore", "InputError422", "InputPlan", "decode_data_url", "encode_output"]

_FILE_TYPES: dict[str, type[File]] = {"File": File, "Image": Image, "Video": Video,
                                      "Audio": Audio}


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
    validator: Any = None
    #: a compiled check for the common case (fastjsonschema, ~15x quicker), or None; the
    #: validator above still explains what is wrong
    quick: Any = None
    #: input name -> (sieve type name, is a list of files)
    files: dict[str, tuple[str, bool]] = field(default_factory=dict)
    positional: tuple[str, ...] = ()
    var_positional: str | None = None

    @classmethod
    def for_spec(cls, spec: FunctionSpec) -> InputPlan:
        import jsonschema

        schema = spec.inputs
        plan = cls(spec, validator=jsonschema.Draft202012Validator(schema),
                   quick=_quick_validator(schema))
        for name, prop in schema.get("properties", {}).items():
            for candidate, many in ((prop, False), (prop.get("items") or {}, True)):
                options = [candidate, *candidate.get("anyOf", [])]
                for option in options:
                    if isinstance(option, dict) and option.get("format") == FILE_FORMAT:
                        plan.files[name] = (option.get("x-sieve-type", "File"), many)
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
            raise InputError422([_detail(["body", "input"], "input must be a JSON object, got "
                                         f"{type(value).__name__}", "type_error")])
        schema_value = value
        if self.var_positional is not None and self.var_positional in value:
            schema_value = {k: v for k, v in value.items() if k != self.var_positional}
            if not isinstance(value[self.var_positional], list):
                raise InputError422([_detail(["body", "input", self.var_positional],
                                             "must be a list (the *args)", "type_error")])
        if self.quick is not None:
            try:
                self.quick(schema_value)
                return value
            except Exception:  # noqa: BLE001, S110 - the full validator says what is wrong
                pass
        errors = list(self.validator.iter_errors(schema_value))
        if errors:
            raise InputError422([self._describe(error, schema_value) for error in errors])
        return value

    def _describe(self, error: Any, value: dict[str, Any]) -> dict[str, Any]:
        path = list(error.absolute_path)
        if error.validator == "required" and not path:
            missing = [n for n in error.validator_value if n not in value]
            name = missing[0] if missing else "input"
            return _detail(["body", "input", name], "Field required", "missing")
        if error.validator == "additionalProperties" and not path:
            known = set(self.spec.inputs.get("properties", {}))
            extra = sorted(set(value) - known)
            name = extra[0] if extra else "input"
            allowed = ", ".join(sorted(known)) or "none"
            return _detail(["body", "input", name],
                           f"Extra inputs are not permitted (inputs: {allowed})",
                           "extra_forbidden")
        return _detail(["body", "input", *path], error.message)

    def call(self, value: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's positional and keyword arguments for an input object."""
        kwargs = dict(value)
        args = [kwargs.pop(name) for name in self.positional if name in kwargs]
        if self.var_positional is not None:
            args += list(kwargs.pop(self.var_positional, []))
        return tuple(args), kwargs


#: keywords whose meaning differs before draft 2020-12 (fastjsonschema's newest is draft 7)
_NEWER_KEYWORDS = frozenset({"prefixItems", "$defs", "dependentRequired", "dependentSchemas",
                             "unevaluatedProperties", "unevaluatedItems", "$dynamicRef",
                             "$anchor", "minContains", "maxContains"})


def _keywords(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = set(node)
        for value in node.values():
            found |= _keywords(value)
        return found
    if isinstance(node, list):
        return set().union(*(_keywords(item) for item in node)) if node else set()
    return set()


def _quick_validator(schema: dict[str, Any]) -> Any:
    """A compiled validator for schemas that mean the same in draft 7, else None."""
    if _keywords(schema) & _NEWER_KEYWORDS:
        return None
    try:
        import fastjsonschema

        return fastjsonschema.compile(schema, use_formats=False)
    except Exception:  # noqa: BLE001 - jsonschema alone is right, only slower
        return None


class Uploads:
    """The private folder of one prediction's input files, removed when it is done."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder: Path | None = None

    def save(self, data: bytes, media_type: str, filename: str = "") -> str:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="upload-", dir=self.root))
        suffix = Path(filename).suffix or (mimetypes.guess_extension(media_type) or "")
        name = Path(filename).name if filename else f"input{suffix}"
        path = self.folder / f"{secrets.token_hex(4)}-{name}"
        path.write_bytes(data)
        return str(path)

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def to_files(plan: InputPlan, value: dict[str, Any], uploads: Uploads,
             uploaded: dict[str, File] | None = None) -> dict[str, Any]:
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
        files = [_one_file(cls, name, item, uploads, index if many else None)
                 for index, item in enumerate(items)]
        out[name] = files if many and isinstance(value[name], list) else files[0]
    return out


def _one_file(cls: type[File], name: str, item: Any, uploads: Uploads,
              index: int | None) -> File:
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
    raise InputError422([_detail(
        loc, "a file must be a data URL (data:<type>;base64,...), an http(s) URL or a "
        "multipart upload; paths on the server are not accepted")])


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


def encode_output(value: Any, *, inline_limit: int, store: FileStore,
                  base_url: str) -> Any:
    """A result as JSON: each `sieve.File` becomes a data URL (up to `inline_limit` bytes) or
    a link to ``GET /files/{id}``; a URL-backed file stays its URL."""
    if isinstance(value, File):
        if value.url is not None and value._local is None:
            return value.url
        path = value.path
        size = os.path.getsize(path)
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if size <= inline_limit:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            return f"data:{media_type};base64,{data}"
        return f"{base_url}files/{store.add(path)}"
    if isinstance(value, list):
        return [encode_output(v, inline_limit=inline_limit, store=store, base_url=base_url)
                for v in value]
    if isinstance(value, dict):
        return {k: encode_output(v, inline_limit=inline_limit, store=store, base_url=base_url)
                for k, v in value.items()}
    return value


def output_encoder(inline_limit: int, store: FileStore, base_url: str) -> Callable[[Any], Any]:
    def encode(value: Any) -> Any:
        if isinstance(value, (int, float, str, bool, type(None))):
            return value
        return encode_output(value, inline_limit=inline_limit, store=store, base_url=base_url)

    return encode
