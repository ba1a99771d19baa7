"""Tables for `%sieve ls` and `%sieve jobs`: HTML in notebooks, aligned text elsewhere."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import Any

from sieve_jupyter.jupyter._tracebacks import error_text
from sieve_jupyter.manager import Manager

__all__ = ["Table", "functions_table", "job_logs", "jobs_table"]


class Table:
    """Rows that render as an HTML table in notebooks and as aligned text in terminals."""

    def __init__(self, columns: Sequence[str], rows: list[list[str]], empty: str) -> None:
        self.columns = list(columns)
        self.rows = rows
        self.empty = empty

    def __repr__(self) -> str:
        if not self.rows:
            return self.empty
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=False))]
        lines += [
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) for row in self.rows
        ]
        return "\n".join(line.rstrip() for line in lines)

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>{html.escape(self.empty)}</p>"
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td style='text-align:left'>{html.escape(v)}</td>" for v in row)
            + "</tr>"
            for row in self.rows
        )
        return f"<table class='sieve-table'><tr>{head}</tr>{body}</table>"


def _ago(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    seconds = time.time() - timestamp
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s" if value < 10 else f"{value:.1f}s"


def functions_table(manager: Manager) -> Table:
    rows = []
    for info in manager.functions():
        workers: list[dict[str, Any]] = info["workers"]
        setups = [w["setup_seconds"] for w in workers if w.get("setup_seconds") is not None]
        last = max((w["setup_at"] for w in workers if w.get("setup_at")), default=None)
        where = (
            ", ".join(str(w.get("container") or w.get("description") or "") for w in workers) or "-"
        )
        rows.append(
            [
                info["name"],
                info["kind"],
                info["backend"],
                f"{sum(1 for w in workers if w['state'] == 'ready')}/{info['size']}",
                info["state"],
                _seconds(max(setups) if setups else None),
                _ago(last),
                str(info["queued"]),
                where,
            ]
        )
    return Table(
        ["name", "kind", "backend", "workers", "state", "setup", "set up", "queued", "where"],
        rows,
        "No functions registered yet: define one with @sieve.function or %%sieve_function.",
    )


def jobs_table(manager: Manager, *, name: str | None = None, limit: int = 20) -> Table:
    rows = []
    for future in manager.jobs():
        if name is not None and future.function != name:
            continue
        snapshot = future.snapshot()
        progress = snapshot["progress"]
        rows.append(
            [
                snapshot["job_id"],
                snapshot["function"],
                snapshot["status"],
                _seconds(snapshot["duration"]),
                _ago(snapshot["submitted_at"]),
                ""
                if progress is None
                else f"{(progress[0] or 0) * 100:.0f}% {progress[1]}".strip(),
                snapshot["error"] or "",
            ]
        )
        if len(rows) >= limit:
            break
    return Table(
        ["job", "function", "status", "duration", "submitted", "progress", "error"],
        rows,
        "No jobs yet.",
    )


def job_logs(manager: Manager, job_id: str) -> str:
    future = manager.job(job_id)
    parts = [f"{future.job_id} ({future.function}): {future.status.value}"]
    for stream, text in future.logs:
        prefix = "" if stream == "stdout" else "[stderr] "
        parts.append("".join(prefix + line for line in text.splitlines(keepends=True)).rstrip("\n"))
    if not future.logs:
        parts.append("(no output)")
    if future.done() and not future.cancelled():
        exc = future.exception()
        if exc is not None:
            parts.append(error_text(exc))
    return "\n".join(parts)
