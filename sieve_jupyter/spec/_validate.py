"""Checks for the scalar and list values of a spec; each failure is a `SpecError` naming the field.

Pip requirements are checked with `packaging.requirements.Requirement` (PEP 508), the grammar
pip itself uses, so a value that passes here is one pip will parse.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from packaging.requirements import InvalidRequirement, Requirement

from sieve_jupyter._errors import SpecError

__all__ = [
    "check_bool",
    "check_env_name",
    "check_function_name",
    "check_image_reference",
    "check_mount",
    "check_python_version",
    "check_requirement",
    "check_run_command",
    "check_str",
    "check_str_list",
    "check_system_package",
    "current_python_version",
]

T = TypeVar("T")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_MAX = 64
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PYTHON_RE = re.compile(r"^3\.(\d{1,2})(\.\d{1,3})?$")
#: Debian package name (policy 5.6.1), optionally ``:arch`` and ``=version``.
_APT_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]+(:[a-z0-9\-]+)?(=[A-Za-z0-9.+:~\-]+)?$")
#: pip options allowed as entries of `python_packages` (they go into requirements.txt).
_PIP_OPTIONS = ("--index-url", "--extra-index-url", "--find-links", "-f", "--pre")
_URL_PREFIXES = ("git+", "hg+", "svn+", "bzr+", "http://", "https://", "file:")
#: A Docker image reference: ``[host[:port]/]path[:tag][@digest]`` (the distribution grammar).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def current_python_version() -> str:
    """The running interpreter's ``"3.X"``; workers must match it to share pickles."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_str(value: Any, field: str, *, allow_empty: bool = True, example: str = "") -> str:
    if not isinstance(value, str):
        raise SpecError(
            field,
            f"must be a string, got {_type_name(value)} {value!r}.",
            f"write it as a string{', e.g. ' + example if example else ''}.",
        )
    if not allow_empty and not value.strip():
        raise SpecError(
            field, "must not be empty.", f"give a value{', e.g. ' + example if example else ''}."
        )
    return value


def check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(
            field,
            f"must be True or False, got {_type_name(value)} {value!r}.",
            f"write {field}=True or {field}=False.",
        )
    return value


def check_str_list(
    value: Any, field: str, check: Callable[[str, str], T] | None = None, *, example: str = ""
) -> tuple[T | str, ...]:
    """A list or tuple of strings, each passed through `check(item, "field[i]")`."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SpecError(
            field,
            f"must be a list of strings, got {_type_name(value)} {value!r}.",
            f"write a list, e.g. {field}={example or '[...]'}.",
        )
    items: list[T | str] = []
    for i, item in enumerate(value):
        item_field = f"{field}[{i}]"
        text = check_str(item, item_field, allow_empty=False)
        items.append(check(text, item_field) if check else text)
    return tuple(items)


def check_function_name(value: Any, field: str = "name") -> str:
    """A function name: letters, digits, ``-``, ``_``, ``.``; no ``/`` (that is the user part)."""
    if value is None:
        raise SpecError(field, "is required.", 'give the function a name, e.g. name="my-function".')
    name = check_str(value, field, allow_empty=False, example='name="my-function"')
    if "/" in name:
        raise SpecError(
            field,
            f"{name!r} contains '/'; the part before a '/' is the user, which is added when the "
            "function is looked up (function.get('user/name')).",
            f"use just the function name, e.g. name={name.rsplit('/', 1)[-1]!r}.",
        )
    if any(ch.isspace() for ch in name):
        dashed = re.sub(r"\s+", "-", name.strip())
        raise SpecError(
            field, f"{name!r} contains whitespace.", f"use dashes instead, e.g. name={dashed!r}."
        )
    if not _NAME_RE.match(name):
        raise SpecError(
            field,
            f"{name!r} is not a valid name.",
            "start with a letter or digit and use only letters, digits, '-', '_' and '.'.",
        )
    if len(name) > NAME_MAX:
        raise SpecError(field, f"is {len(name)} characters long.", f"use at most {NAME_MAX}.")
    return name


def check_env_name(value: Any, field: str) -> str:
    name = check_str(value, field, allow_empty=False, example='"OPENAI_API_KEY"')
    if not _ENV_NAME_RE.match(name):
        raise SpecError(
            field,
            f"{name!r} is not an environment variable name.",
            "use letters, digits and '_', not starting with a digit, e.g. 'OPENAI_API_KEY'.",
        )
    return name


def check_python_version(value: Any, field: str = "python_version") -> str:
    """``"3.11"`` (or ``"3.11.7"``, kept to its minor version) -> ``"3.11"``."""
    if not isinstance(value, str):
        raise SpecError(
            field,
            f"must be a string, got {_type_name(value)} {value!r}.",
            f'quote it (3.10 as a number is 3.1), e.g. {field}="{current_python_version()}".',
        )
    match = _PYTHON_RE.match(value.strip())
    if not match:
        raise SpecError(
            field,
            f"{value!r} is not a Python version.",
            f'write "3.X", e.g. {field}="{current_python_version()}".',
        )
    minor = int(match.group(1))
    if minor < 8:
        raise SpecError(field, f"Python {value} is too old.", "use Python 3.8 or newer.")
    return f"3.{minor}"


def check_requirement(value: str, field: str) -> str:
    """One pip requirement (PEP 508), a direct URL, or one of a few pip options."""
    text = value.strip()
    if text.startswith("-"):
        option = text.split("=", 1)[0].split(None, 1)[0]
        if option not in _PIP_OPTIONS:
            raise SpecError(
                field,
                f"pip option {option!r} is not supported here.",
                f"use a requirement like 'numpy>=1.26', or one of {', '.join(_PIP_OPTIONS)}.",
            )
        if option != "--pre" and len(re.split(r"[\s=]+", text, maxsplit=1)) < 2:
            raise SpecError(
                field, f"{option} needs a value.", f"write e.g. '{option} https://...'."
            )
        return text
    if text.startswith(_URL_PREFIXES):
        if any(ch.isspace() for ch in text):
            raise SpecError(field, f"{value!r} contains whitespace.", "give one URL per entry.")
        return text
    try:
        Requirement(text)
    except InvalidRequirement as exc:
        raise SpecError(
            field,
            f"{value!r} is not a valid pip requirement ({exc}).",
            "write one requirement per entry, e.g. 'numpy>=1.26' or 'torch==2.4.0'.",
        ) from None
    return text


def check_system_package(value: str, field: str) -> str:
    text = value.strip()
    if not _APT_RE.match(text):
        raise SpecError(
            field,
            f"{value!r} is not an apt package name.",
            "write one lowercase Debian package per entry, e.g. 'ffmpeg' or 'libgl1=1.6.0-1'.",
        )
    return text


def check_run_command(value: str, field: str) -> str:
    if "\n" in value or "\r" in value:
        raise SpecError(
            field,
            "contains a line break.",
            "give each command its own list entry (join steps with '&&' to share a shell).",
        )
    return value.strip()


def check_image_reference(value: Any, field: str) -> str:
    """A Docker image reference such as ``python:3.11-slim`` or ``ghcr.io/org/img@sha256:...``."""
    text = check_str(value, field, allow_empty=False, example='"python:3.11-slim"')
    if not _IMAGE_RE.match(text):
        raise SpecError(
            field,
            f"{text!r} is not a Docker image reference.",
            'write [registry/]name[:tag] in lowercase, e.g. "pytorch/pytorch:2.3.1-cuda12.1-'
            'cudnn8-runtime" or "python:3.11-slim".',
        )
    return text


def check_mount(value: str, field: str) -> str:
    """A host path a worker reads at the same path: absolute, optionally ending in ``:ro``."""
    path = value[: -len(":ro")] if value.endswith(":ro") else value
    if not path.startswith("/") or "\0" in path:
        raise SpecError(
            field,
            f"{value!r} is not an absolute host path.",
            'give an absolute path, optionally ending in ":ro" for read-only, e.g. "/data:ro".',
        )
    return value
