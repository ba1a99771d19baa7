"""Parameter and return descriptions from a docstring, in the three common styles.

reST (``:param x: ...``, ``:returns: ...``), Google (``Args:`` / ``Returns:``) and numpy
(``Parameters`` / ``Returns`` underlined with dashes); continuation lines are joined with spaces.
"""

from __future__ import annotations

import inspect
import re

__all__ = ["parse_docstring"]

_REST_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\*{0,2}\w+)\s*:\s*(.*)$")
_REST_RETURN = re.compile(r"^:(?:returns?|yields?)\s*:\s*(.*)$")
_GOOGLE_HEADERS = {
    "args": "params",
    "arguments": "params",
    "parameters": "params",
    "params": "params",
    "keyword args": "params",
    "keyword arguments": "params",
    "returns": "returns",
    "return": "returns",
    "yields": "returns",
    "yield": "returns",
}
_GOOGLE_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_GOOGLE_RETURN_TYPE = re.compile(r"^[\w\[\], .|]+:\s+")
_NUMPY_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(?::\s*.*)?$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _join(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def parse_docstring(doc: str | None) -> tuple[dict[str, str], str]:
    """Parameter descriptions and the return description from a docstring.

    Understands reST (``:param x: ...``, ``:returns: ...``), Google (``Args:`` / ``Returns:``)
    and numpy (``Parameters`` / ``Returns`` underlined with dashes) styles; continuation lines
    are joined with spaces.
    """
    if not doc:
        return {}, ""
    lines = inspect.cleandoc(doc).splitlines()
    params: dict[str, str] = {}
    returns = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        rest = _REST_PARAM.match(stripped) or _REST_RETURN.match(stripped)
        if rest:
            parts = [rest.group(rest.lastindex or 1)]
            base = _indent(line)
            i += 1
            while (
                i < len(lines)
                and lines[i].strip()
                and _indent(lines[i]) > base
                and not lines[i].strip().startswith(":")
            ):
                parts.append(lines[i])
                i += 1
            if rest.re is _REST_PARAM:
                params[rest.group(1).lstrip("*")] = _join(parts)
            else:
                returns = _join(parts)
            continue
        header = stripped.rstrip(":").lower()
        numpy_style = (
            i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"} and header in _GOOGLE_HEADERS
        )
        google_style = stripped.endswith(":") and header in _GOOGLE_HEADERS
        if numpy_style or google_style:
            section = _GOOGLE_HEADERS[header]
            base = _indent(line)
            i += 2 if numpy_style else 1
            block: list[str] = []
            while i < len(lines):
                nxt = lines[i]
                if nxt.strip():
                    if numpy_style:
                        if i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
                            break  # the next numpy section
                    elif _indent(nxt) <= base:
                        break
                block.append(nxt)
                i += 1
            if section == "returns":
                returns = _join(_section_text(block, numpy_style))
                if not numpy_style:  # Google's "Returns:\n    int: the sum"
                    returns = _GOOGLE_RETURN_TYPE.sub("", returns, count=1)
            else:
                params.update(_section_entries(block, numpy_style))
            continue
        i += 1
    return params, returns


def _section_text(block: list[str], numpy_style: bool) -> list[str]:
    if numpy_style and block and block[0].strip() and len(block) > 1:
        # numpy "Returns" starts with the type on its own line when the text is indented below
        first_indent = _indent(block[0])
        if all(_indent(b) > first_indent for b in block[1:] if b.strip()):
            return block[1:]
    return block


def _section_entries(block: list[str], numpy_style: bool) -> dict[str, str]:
    entries: dict[str, str] = {}
    nonblank = [b for b in block if b.strip()]
    if not nonblank:
        return entries
    entry_indent = min(_indent(b) for b in nonblank)
    current: str | None = None
    parts: list[str] = []
    for line in block:
        if not line.strip():
            continue
        if _indent(line) == entry_indent:
            if current is not None:
                entries[current] = _join(parts)
            pattern = _NUMPY_ENTRY if numpy_style else _GOOGLE_ENTRY
            match = pattern.match(line.strip())
            if match is None:
                current, parts = None, []
                continue
            current = match.group(1).lstrip("*")
            parts = [] if numpy_style else [match.group(2)]
        elif current is not None:
            parts.append(line)
    if current is not None:
        entries[current] = _join(parts)
    return entries
