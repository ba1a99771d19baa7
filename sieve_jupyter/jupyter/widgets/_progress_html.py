"""The HTML pieces of the progress widget: one bar and one line per function, a job's detail,
the folded list of errors.

Inline styles in JupyterLab's theme variables, so the same HTML serves the live widget (where
the shared style sheet adds the moving stripes) and a saved notebook's static copy.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from sieve_jupyter.jupyter._tracebacks import error_text
from sieve_jupyter.jupyter.widgets._render import text_preview
from sieve_jupyter.jupyter.widgets._style import COLORS, INLINE, plural
from sieve_jupyter.jupyter.widgets._tracker import TERMINAL, FunctionCounts

__all__ = [
    "bar_html",
    "error_item_html",
    "format_seconds",
    "function_html",
    "job_detail_html",
    "job_label",
    "logs_html",
    "single_html",
]

_MAX_LOG_CHARS = 20_000
#: the word for each status, the same as the side panel's
STATUS_WORD = {"processing": "running"}


def format_seconds(seconds: float | None, *, coarse: bool = False) -> str:
    """``4.2 s`` (``4 s`` when `coarse`), ``3 min 05 s``, ``1 h 02 min``; ``–`` when unknown.

    Running clocks are drawn coarse: a tenth-of-a-second clock would change on every redraw
    and cost a comm message per widget per tick even while nothing else moves.
    """
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{int(seconds)} s" if coarse else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def job_label(future: Future[Any]) -> str:
    """``resize #12`` for job ``resize-12``: the function once, then the job's number."""
    function = str(getattr(future, "function", "") or "")
    job_id = str(getattr(future, "job_id", "") or "")
    if function and job_id.startswith(function + "-"):
        return f"{function} #{job_id[len(function) + 1 :]}"
    return f"{function} {job_id}".strip() or "job"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=False)


def bar_html(
    counts: FunctionCounts | None = None,
    *,
    fraction: float | None = None,
    running: bool = False,
    color: str = "processing",
) -> str:
    """One bar as wide as the output: finished, errors, cancelled, then running jobs (striped
    and moving while anything runs); or one job's own fraction; or, with neither, a moving
    stripe that never looks finished early."""
    stripes = ' class="sieve-stripes"' if running else ""
    if counts is not None:
        total = max(counts.total, 1)
        parts = [
            (name, counts.counts[name] / total)
            for name in ("finished", "error", "cancelled", "processing")
        ]
        inner = "".join(
            f"<div{stripes if name == 'processing' else ''} "
            f'style="width:{share * 100:.2f}%;background-color:{COLORS[name]}"></div>'
            for name, share in parts
            if share > 0
        )
    elif fraction is not None:
        inner = (
            f'<div{stripes} style="width:{max(0.0, min(fraction, 1.0)) * 100:.2f}%;'
            f'background-color:{COLORS[color]}"></div>'
        )
    else:
        moving = ' class="sieve-stripes sieve-indeterminate"' if running else ""
        inner = (
            f'<div{moving} style="width:100%;background-color:{COLORS[color]}"></div>'
            if running
            else ""
        )
    return (
        '<div class="sieve-bar" style="display:flex;height:10px;width:100%;border-radius:2px;'
        f'overflow:hidden;background-color:{COLORS["track"]};margin:3px 0 6px">{inner}</div>'
    )


def _head(left: str, right: str) -> str:
    return (
        f'<div class="sieve-head" style="display:flex;flex-wrap:wrap;gap:0 8px;'
        f'align-items:baseline">{left}<span class="sieve-timing" '
        f'style="margin-left:auto;{INLINE["muted"]}">{right}</span></div>'
    )


def function_html(counts: FunctionCounts, now: float) -> str:
    """One function of many: ``resize 312/500 · 2 running · 4 errors`` … timing, and its bar."""
    elapsed, rate, eta = counts.timing(now)
    c = counts.counts
    running = counts.done < counts.total
    parts = [
        f"<b>{_esc(counts.name)}</b>",
        f'<span style="{INLINE["muted"]}">{counts.done:,}/{counts.total:,}</span>',
    ]
    if c["processing"]:
        parts.append(
            f'<span style="color:{COLORS["processing"]}">{c["processing"]:,} running</span>'
        )
    if c["queued"]:
        parts.append(f'<span style="{INLINE["muted"]}">{c["queued"]:,} queued</span>')
    if c["finished"]:
        parts.append(f'<span style="color:{COLORS["finished"]}">{c["finished"]:,} finished</span>')
    if c["error"]:
        parts.append(f'<span style="{INLINE["error"]}">{plural(c["error"], "error")}</span>')
    if c["cancelled"]:
        parts.append(f'<span style="{INLINE["muted"]}">{c["cancelled"]:,} cancelled</span>')
    timing = [
        f"{format_seconds(elapsed, coarse=running)} elapsed",
        f"{rate:,.1f}/s" if rate is not None else "–/s",
    ]
    if running:
        timing.append(f"ETA {format_seconds(eta, coarse=True)}")
    return _head(" · ".join(parts), " · ".join(timing)) + bar_html(
        counts, running=running and c["processing"] > 0
    )


def single_html(counts: FunctionCounts, future: Future[Any], now: float) -> str:
    """One job: ``resize #12 · running · 40% frames`` … its clock, and a bar that moves."""
    status = next((name for name, n in counts.counts.items() if n), "queued")
    elapsed = counts.timing(now)[0]
    progress = getattr(future, "progress", None)
    fraction: float | None = None
    note = ""
    if status == "processing" and progress:
        value, message = progress
        fraction = float(value) if isinstance(value, (int, float)) else None
        note = " ".join(
            filter(None, [f"{fraction:.0%}" if fraction is not None else "", str(message or "")])
        )
    word = STATUS_WORD.get(status, status)
    color = {
        "finished": COLORS["finished"],
        "error": COLORS["error"],
        "processing": COLORS["processing"],
    }.get(status, COLORS["muted"])
    left = (
        f"<b>{_esc(job_label(future))}</b> · "
        f'<span class="sieve-status" style="color:{color}">{_esc(word)}</span>'
        + (f' · <span style="{INLINE["muted"]}">{_esc(note)}</span>' if note else "")
    )
    right = format_seconds(elapsed, coarse=status not in TERMINAL)
    if status == "finished":
        bar = bar_html(fraction=1.0, color="finished")
    elif status in ("error", "cancelled"):
        bar = bar_html(fraction=1.0, color=status)
    else:
        bar = bar_html(
            fraction=fraction,
            running=True,
            color="processing" if status == "processing" else "cancelled",
        )
    return _head(left, right) + bar


def logs_html(logs: Sequence[tuple[str, str]]) -> str:
    """A job's printed output, stderr in red, the newest part when it is long."""
    text = "".join(
        f'<span style="{INLINE["error"]}">{_esc(chunk)}</span>'
        if stream == "stderr"
        else _esc(chunk)
        for stream, chunk in logs
    )
    if len(text) > _MAX_LOG_CHARS:
        text = "…" + text[-_MAX_LOG_CHARS:]
    return f'<pre class="sieve-pre" style="{INLINE["pre"]}">{text}</pre>'


def error_item_html(future: Future[Any], exc: BaseException, *, open_: bool = False) -> str:
    """One error, folded: ``resize #14 · ValueError: odd input 13``, its traceback inside."""
    text = error_text(exc)
    headline = text.rsplit("\n", 1)[-1]
    title = f"{job_label(future)} · " if getattr(future, "job_id", None) else ""
    return (
        f'<details{" open" if open_ else ""} style="margin:1px 0"><summary>'
        f'{_esc(title)}<span style="{INLINE["error"]}">{_esc(headline)}</span></summary>'
        f'<pre class="sieve-pre" style="{INLINE["pre"]}">{_esc(text)}</pre></details>'
    )


def job_detail_html(future: Future[Any]) -> str:
    """One job: status and timing, its logs, streamed outputs and error."""
    status = getattr(getattr(future, "status", None), "value", None) or (
        "finished" if future.done() else "queued"
    )
    parts = [f"<div><b>{_esc(job_label(future))}</b> · {_esc(STATUS_WORD.get(status, status))}"]
    duration = getattr(future, "duration", None)
    if isinstance(duration, (int, float)):
        parts.append(f" · {format_seconds(duration)}")
    progress = getattr(future, "progress", None)
    if progress and not future.done():
        fraction, message = progress
        share = f"{fraction:.0%} " if isinstance(fraction, (int, float)) else ""
        parts.append(f" · {share}{_esc(message or '')}")
    parts.append("</div>")
    logs = list(getattr(future, "logs", None) or [])
    if logs:
        parts.append('<div class="sieve-heading">Logs</div>' + logs_html(logs))
    outputs = list(getattr(future, "outputs", None) or [])
    if outputs:
        shown = "".join(f"<li>{_esc(text_preview(o, 200))}</li>" for o in outputs[-5:])
        last = ", the last 5" if len(outputs) > 5 else ""
        parts.append(
            f'<div class="sieve-heading">{plural(len(outputs), "streamed output")}'
            f'{last}</div><ol style="margin:2px 0">{shown}</ol>'
        )
    if future.done() and not future.cancelled():
        exc = future.exception()
        if exc is not None:
            parts.append(
                '<div class="sieve-heading">Error</div>'
                f'<pre class="sieve-pre" style="{INLINE["pre"]}">'
                f"{_esc(error_text(exc))}</pre>"
            )
    return "".join(parts)
