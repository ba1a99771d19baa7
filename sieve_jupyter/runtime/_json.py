"""The JSON form of a Python value: what a served function's results become (in its worker),
and what the HTTP client sends as a call's inputs.

Numbers, strings, lists and dicts stay as they are; numpy arrays and scalars, pydantic models,
dataclasses, enums, dates and times, UUIDs, decimals and sets become their JSON values (which
the other side's type hints turn back: pydantic validates a date from its ISO text), bytes a data
URL. Files are the caller's to write (`file`): a worker keeps a `sieve.File`, which the server
then sends as a data URL or a link; the client sends its content as a data URL, or its URL.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import math
import pathlib
import uuid
from collections.abc import Callable
from typing import Any

from sieve_jupyter.runtime._types import File

__all__ = ["to_json"]

_PLAIN = (str, int, bool, type(None))


def to_json(value: Any, file: Callable[[File], Any] | None = None) -> Any:
    """`value` as JSON values; each `sieve.File` (a path is one) as `file` makes it (left as
    it is by default). A float that is not finite (NaN, infinities) has no JSON form: null.

    Raises:
        TypeError: a value of a type that has no JSON form, naming the type and the fix.
    """
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pathlib.PurePath):
        value = File(str(value))
    if isinstance(value, File):
        return value if file is None else file(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item, file) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json(item, file) for key, item in value.items()}
    if isinstance(value, enum.Enum):
        return to_json(value.value, file)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = base64.b64encode(bytes(value)).decode("ascii")
        return f"data:application/octet-stream;base64,{data}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name), file) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        return to_json(dump(mode="json"), file)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        return to_json(tolist(), file)
    raise TypeError(
        f"a value of type {type(value).__module__}.{type(value).__qualname__} has no JSON "
        "form. Fix: use plain data (numbers, strings, lists, dicts), a numpy array, a "
        "pydantic model, a dataclass or a sieve.File."
    )
