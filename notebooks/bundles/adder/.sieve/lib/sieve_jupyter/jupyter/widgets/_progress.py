"""The live progress widget for pushed futures, and the view of a single future.

`ProgressWidget` shows, per function, a bar and the counts of queued/processing/finished/error
jobs with elapsed time, rate and ETA; the errors with their tracebacks; and, for a chosen job,
its logs and streamed outputs. It redraws from the shared `Ticker` (a few times per second),
sending only the parts that changed, and when everything is done it replaces its saved display
with a static HTML copy of the final state, so a saved notebook stays readable without widgets.
"""

from __future__ import annotations

import html
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

import ipywidgets as widgets

from sieve_jupyter.jupyter.widgets._render import (
    error_html,
    render_error,
    render_value,
    text_preview,
)
from sieve_jupyter.jupyter.widgets._tracker import (
    TERMINAL,
    EventSource,
    FunctionCounts,
    ProgressState,
    Ticker,
    get_ticker,
)

__all__ = ["ProgressWidget", "format_seconds", "job_detail_html"]

_COLORS = {"finished": "#43a047", "error": "#e53935", "cancelled": "#9e9e9e",
           "processing": "#64b5f6"}
_MAX_ERRORS_SHOWN = 20
_MAX_JOB_OPTIONS = 60
_MAX_LOG_CHARS = 20_000
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


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


def job_detail_html(future: Future[Any]) -> str:
    """HTML for one job: status, timing, progress, logs, streamed outputs, and its error."""
    status = getattr(getattr(future, "status", None), "value", None) or (
        "finished" if future.done() else "pending")
    job_id = getattr(future, "job_id", "")
    parts = [f"<div><b>job {html.escape(str(job_id))}</b> · {html.escape(str(status))}"]
    duration = getattr(future, "duration", None)
    if isinstance(duration, (int, float)):
        parts.append(f" · {format_seconds(duration)}")
    progress = getattr(future, "progress", None)
    if progress and not future.done():
        fraction, message = progress
        share = f"{fraction:.0%} " if isinstance(fraction, (int, float)) else ""
        parts.append(f" · {share}{html.escape(str(message or ''))}")
    parts.append("</div>")
    logs = list(getattr(future, "logs", None) or [])
    if logs:
        text = "".join(
            f'<span style="color:#c62828">{html.escape(str(t))}</span>' if s == "stderr"
            else html.escape(str(t)) for s, t in logs
        )
        if len(text) > _MAX_LOG_CHARS:
            text = "…" + text[-_MAX_LOG_CHARS:]
        parts.append('<div style="color:#666">logs</div><pre style="white-space:pre-wrap;'
                     f'max-height:240px;overflow:auto;margin:0">{text}</pre>')
    outputs = list(getattr(future, "outputs", None) or [])
    if outputs:
        shown = "".join(f"<li>{html.escape(text_preview(o, 200))}</li>" for o in outputs[-5:])
        parts.append(f'<div style="color:#666">{len(outputs)} streamed output(s)'
                     f"{', last 5' if len(outputs) > 5 else ''}</div><ol>{shown}</ol>")
    if future.done() and not future.cancelled() and future.exception() is not None:
        exc = future.exception()
        assert exc is not None
        parts.append(error_html(exc, open_traceback=True))
    return "".join(parts)


def _bar_html(counts: FunctionCounts, fraction: float | None = None) -> str:
    """A stacked bar: finished, error, cancelled, processing (or one job's own fraction)."""
    total = max(counts.total, 1)
    if fraction is not None:
        color = _COLORS["finished"] if counts.counts["finished"] else _COLORS["processing"]
        segments = [(color, fraction)]
    else:
        segments = [(_COLORS[name], counts.counts[name] / total)
                    for name in ("finished", "error", "cancelled", "processing")]
    inner = "".join(f'<div style="width:{share * 100:.2f}%;background:{color}"></div>'
                    for color, share in segments if share > 0)
    return ('<div style="display:flex;height:10px;background:#e0e0e0;border-radius:3px;'
            f'overflow:hidden;margin:2px 0 6px 0;max-width:640px">{inner}</div>')


def _row_html(counts: FunctionCounts, now: float, single: Future[Any] | None) -> str:
    elapsed, rate, eta = counts.timing(now)
    c = counts.counts
    if single is not None:
        status = next(name for name in c if c[name])
        progress = getattr(single, "progress", None)
        fraction = (float(progress[0]) if progress and isinstance(progress[0], (int, float))
                    and status == "processing" else None)
        note = f" {progress[1]}" if progress and progress[1] and status == "processing" else ""
        if status in TERMINAL:
            fraction = 1.0 if status == "finished" else None
        label = (f"{html.escape(status)}{f' · {fraction:.0%}' if fraction is not None else ''}"
                 f"{html.escape(note)} · {format_seconds(elapsed, coarse=status not in TERMINAL)}")
        job_id = getattr(single, "job_id", None)
        head = f"<b>{html.escape(counts.name)}</b>" + (
            f' <span style="color:#777">job {html.escape(str(job_id))}</span>' if job_id else "")
        return f"<div>{head} · {label}</div>" + _bar_html(counts, fraction)
    stats = [f"{counts.done:,}/{counts.total:,}"]
    stats += [f'<span style="color:{_COLORS.get(name, "#555")}">{c[name]:,} {name}</span>'
              for name in ("queued", "processing", "finished", "error", "cancelled")
              if c[name] or name in ("queued", "processing", "finished", "error")]
    running = counts.done < counts.total
    stats.append(f"{format_seconds(elapsed, coarse=running)} elapsed")
    stats.append(f"{rate:.1f}/s" if rate is not None else "–/s")
    if running:
        stats.append(f"ETA {format_seconds(eta, coarse=True)}")
    return (f"<div><b>{html.escape(counts.name)}</b> · " + " · ".join(stats) + "</div>"
            + _bar_html(counts))


class ProgressWidget(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types
    """Live progress of one or many futures (see the module docstring).

    Args:
        futures: the futures to follow, across any functions.
        show_result: when following a single future, render its result (or error) when done.
        events: the event bus to follow (the manager's by default); tests pass their own.
        ticker: what calls `tick()` (the shared throttled thread by default).
    """

    def __init__(self, futures: Iterable[Future[Any]], *, show_result: bool = True,
                 events: EventSource | None = None, ticker: Ticker | None = None) -> None:
        self.state = ProgressState(futures, events=events)
        futures_list = self.state.futures
        self.single: Future[Any] | None = futures_list[0] if len(futures_list) == 1 else None
        self.show_result = show_result and self.single is not None
        self.display_id = f"sieve-progress-{uuid.uuid4().hex}"
        self.summary = widgets.HTML()
        self.errors = widgets.HTML()
        self.job_select = widgets.Dropdown(options=[], description="job",
                                           layout=widgets.Layout(width="420px"))
        self.job_detail = widgets.HTML()
        self.result = widgets.VBox()
        self.ticks = 0
        self.failed: BaseException | None = None  # why drawing stopped, if it did
        self._draw_lock = threading.RLock()
        self.finished = False
        self._displayed = False
        self._errors_drawn = -1
        self._options_version = -1
        self._options_at = 0.0
        self._detail_key: tuple[Any, ...] | None = None
        children: list[widgets.Widget] = [self.summary, self.errors]
        if self.single is None:
            self.job_select.observe(self._on_pick, names="value")
            inspector = widgets.Accordion(children=[widgets.VBox([self.job_select,
                                                                 self.job_detail])])
            inspector.set_title(0, "Jobs: logs and outputs")
            inspector.selected_index = None
            children.append(inspector)
        else:
            children += [self.job_detail, self.result]
        super().__init__(children)
        self.add_class("sieve-progress")
        self.tick()
        if not self.finished:
            (ticker or get_ticker()).add(self)

    # -- drawing -------------------------------------------------------------------------------
    def tick(self) -> bool:
        """Redraw what changed; return False once the final state is drawn (for the ticker)."""
        # the ticker thread and the kernel's main thread (first draw, job picks) both draw
        with self._draw_lock:
            if self.failed is not None:
                return False
            try:
                return self._tick()
            except Exception as exc:  # say so in the widget: a frozen bar would look like a hang
                self.failed = exc
                self.state.close()
                message = html.escape(f"{type(exc).__name__}: {exc}")
                self.errors.value = (f'<div style="color:#b71c1c">progress display stopped: '
                                     f"{message}</div>")
                return False

    def _tick(self) -> bool:
        if self.finished:
            return False
        self.ticks += 1
        self.state.poll()
        done = self.state.all_done
        now = time.time()
        self._set(self.summary, self._summary_html(now))
        if len(self.state.errors) != self._errors_drawn and self.single is None:
            self._errors_drawn = len(self.state.errors)
            self._set(self.errors, self._errors_html())
        if self.single is None and (done or now - self._options_at >= 1.0):
            self._refresh_options(now)
        self._draw_detail()
        if done:
            self._finish()
            return False
        return True

    @staticmethod
    def _set(widget: widgets.HTML, value: str) -> None:
        if widget.value != value:  # an unchanged value would still cost a comm message
            widget.value = value

    def _summary_html(self, now: float) -> str:
        rows = [_row_html(counts, now, self.single) for counts in self.state.functions.values()]
        if not rows:
            rows = ['<div style="color:#777">No jobs to follow.</div>']
        if len(self.state.functions) > 1:
            totals = self.state.totals()
            rows.insert(0, f'<div style="color:#555">{totals["total"]:,} jobs across '
                           f"{len(self.state.functions)} functions</div>")
        return '<div class="sieve-progress-summary">' + "".join(rows) + "</div>"

    def _errors_html(self) -> str:
        errors = self.state.errors
        if not errors:
            return ""
        items = []
        for future in errors[:_MAX_ERRORS_SHOWN]:
            exc = future.exception()
            if exc is None:
                continue
            title = f"{getattr(future, 'function', '')} job {getattr(future, 'job_id', '')}"
            items.append(f'<div style="margin:2px 0">{error_html(exc, title=title.strip())}</div>')
        more = len(errors) - _MAX_ERRORS_SHOWN
        tail = f'<div style="color:#777">… and {more:,} more errors</div>' if more > 0 else ""
        return f"<div><b>{len(errors):,} error(s)</b></div>" + "".join(items) + tail

    def _refresh_options(self, now: float) -> None:
        if self.state.version == self._options_version:
            return
        self._options_version, self._options_at = self.state.version, now
        chosen: dict[Any, str] = {}
        for future in self.state.errors[:20]:
            chosen.setdefault(future, "error")
        for future in list(self.state.processing.values())[:20]:
            chosen.setdefault(future, "processing")
        for future in self.state.futures:
            if len(chosen) >= _MAX_JOB_OPTIONS:
                break
            chosen.setdefault(future, self.state.status_of(future))
        options = [(f"{getattr(f, 'function', '')} {getattr(f, 'job_id', id(f))} · {status}",
                    index) for index, (f, status) in enumerate(chosen.items())]
        self._option_futures = list(chosen)
        labels = [label for label, _ in options]
        if labels != [label for label, _ in self.job_select.options]:
            current = self.job_select.value
            self.job_select.options = options
            if current is not None and current < len(options):
                self.job_select.value = current

    def _on_pick(self, _change: dict[str, Any]) -> None:
        with self._draw_lock:
            self._draw_detail(force=True)

    def _selected(self) -> Future[Any] | None:
        if self.single is not None:
            return self.single
        index = self.job_select.value
        futures = getattr(self, "_option_futures", [])
        return futures[index] if isinstance(index, int) and index < len(futures) else None

    def _draw_detail(self, force: bool = False) -> None:
        future = self._selected()
        if future is None:
            self._set(self.job_detail, "")
            return
        # cheap fingerprint: redraw only when the job moved or produced logs/outputs
        logs, outputs = getattr(future, "logs", None), getattr(future, "outputs", None)
        key = (id(future), future.done(), getattr(future, "status", None), len(logs or ()),
               len(outputs or ()), getattr(future, "progress", None))
        if force or key != self._detail_key:
            self._detail_key = key
            self._set(self.job_detail, job_detail_html(future) if self.single is None
                      else self._single_logs_html(future))

    @staticmethod
    def _single_logs_html(future: Future[Any]) -> str:
        """For one future the summary row already says status; show only logs and outputs."""
        detail = job_detail_html(future)
        return detail.split("</div>", 1)[1] if "</div>" in detail else detail

    def _finish(self) -> None:
        self.finished = True
        self.state.close()
        if self.show_result and self.single is not None:
            self.result.children = (self._render_outcome(self.single),)
        if self._displayed:
            try:
                from IPython.display import update_display

                update_display(self._bundle(), raw=True,  # type: ignore[no-untyped-call]
                               display_id=self.display_id)
            except Exception:  # pragma: no cover - outside IPython there is no display to update
                pass

    @staticmethod
    def _render_outcome(future: Future[Any]) -> widgets.Widget:
        if future.cancelled():
            return widgets.HTML('<div style="color:#777">cancelled</div>')
        exc = future.exception()
        if exc is not None:
            return render_error(exc)
        return render_value(future.result())

    # -- display -------------------------------------------------------------------------------
    def static_html(self) -> str:
        """The current state as plain HTML (what a saved notebook shows without widgets)."""
        body = self._summary_html(time.time()) + self.errors.value
        if self.single is not None and self.single.done():
            if not self.single.cancelled() and self.single.exception() is not None:
                exc = self.single.exception()
                assert exc is not None
                body += error_html(exc, open_traceback=True)
            elif not self.single.cancelled():
                body += ("<pre style='white-space:pre-wrap'>"
                         + html.escape(text_preview(self.single.result(), 5000)) + "</pre>")
        return f'<div class="sieve-progress-static">{body}</div>'

    def static_text(self) -> str:
        """The current state as one line of plain text."""
        totals = self.state.totals()
        parts = [f"{totals[name]} {name}" for name in ("queued", "processing", "finished",
                                                       "error", "cancelled") if totals[name]]
        return f"sieve progress: {totals['total']} job(s): " + ", ".join(parts)

    def _bundle(self) -> dict[str, Any]:
        bundle = dict(super()._repr_mimebundle_() or {})
        bundle["text/plain"] = self.static_text()
        bundle["text/html"] = self.static_html()
        return bundle

    def _ipython_display_(self) -> None:
        """Display with a display id, so the final state can replace the saved fallback."""
        from IPython.display import display

        self._displayed = True
        display(self._bundle(), raw=True,  # type: ignore[no-untyped-call]
                display_id=self.display_id)
