"""The live progress widget for pushed futures, and the view of a single future.

`ProgressWidget` shows, per function, one bar and a line of counts with elapsed time, rate and
ETA; the errors, folded, with their tracebacks; and, behind a disclosure, a job picker with each
job's logs and streamed outputs. A displayed widget *claims* its jobs' output: what they print
lives in the picker, and one line says how many printed, so a batch never floods its cell.
For a single future it shows the job's status, logs and, under its own heading, the result.

It redraws from the shared `Ticker` (a few times per second), sending only the parts that
changed, and when everything is done it replaces its saved display with a static HTML copy of
the final state, so a saved notebook stays readable without widgets.
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

from sieve_jupyter.jupyter.widgets._progress_html import (
    error_item_html,
    format_seconds,
    function_html,
    job_detail_html,
    job_label,
    logs_html,
    single_html,
)
from sieve_jupyter.jupyter.widgets._render import render_error, render_value, text_preview
from sieve_jupyter.jupyter.widgets._style import INLINE, plural, style_widget
from sieve_jupyter.jupyter.widgets._tracker import (
    EventSource,
    ProgressState,
    Ticker,
    get_ticker,
)

__all__ = ["ProgressWidget", "format_seconds", "job_detail_html"]

_MAX_ERRORS_SHOWN = 20
_MAX_JOB_OPTIONS = 60


def _claim(futures: Iterable[Future[Any]]) -> None:
    try:
        from sieve_jupyter.jupyter._routing import claim_output
    except ImportError:  # pragma: no cover - the routing ships with the widgets
        return
    claim_output(futures)


class ProgressWidget(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types
    """Live progress of one or many futures (see the module docstring).

    Args:
        futures: the futures to follow, across any functions.
        show_result: when following a single future, render its result (or error) when done.
        inputs: the job's arguments, for results drawn over an input (boxes on an image).
        events: the event bus to follow (the manager's by default); tests pass their own.
        ticker: what calls `tick()` (the shared throttled thread by default).
    """

    def __init__(
        self,
        futures: Iterable[Future[Any]],
        *,
        show_result: bool = True,
        inputs: dict[str, Any] | None = None,
        events: EventSource | None = None,
        ticker: Ticker | None = None,
    ) -> None:
        self.state = ProgressState(futures, events=events)
        futures_list = self.state.futures
        # From now on what the jobs print lives here, not under the cells that pushed them.
        _claim(futures_list)
        self.single: Future[Any] | None = futures_list[0] if len(futures_list) == 1 else None
        self.show_result = show_result and self.single is not None
        if inputs is None and self.single is not None and not self.single.done():
            # (a job lets go of its arguments when it ends: keep them for drawing the result)
            inputs = dict(getattr(self.single, "kwargs", None) or {})
            for index, value in enumerate(getattr(self.single, "args", None) or ()):
                inputs[f"arg{index}"] = value
        self.inputs = inputs or {}
        self.display_id = f"sieve-progress-{uuid.uuid4().hex}"
        self.summary = widgets.HTML()
        self.errors = widgets.HTML()
        self.printed = widgets.HTML(layout=widgets.Layout(display="none"))
        self.job_select = widgets.Dropdown(options=[], layout=widgets.Layout(width="420px"))
        self.job_detail = widgets.HTML()
        self.result = widgets.VBox()
        self.ticks = 0
        self.failed: BaseException | None = None  # why drawing stopped, if it did
        self._draw_lock = threading.RLock()
        self.finished = False
        self._displayed = False
        self._errors_drawn = -1
        self._printed_drawn = -1
        self._options_version = -1
        self._options_at = 0.0
        self._detail_key: tuple[Any, ...] | None = None
        children: list[widgets.Widget] = [style_widget(), self.summary, self.errors]
        if self.single is None:
            self.jobs_toggle = widgets.Button(
                description="Jobs: logs and outputs", tooltip="pick a job to read what it printed"
            )
            self.jobs_toggle.add_class("sieve-disclosure")
            self.inspector = widgets.VBox(
                [self.job_select, self.job_detail], layout=widgets.Layout(display="none")
            )
            self.jobs_toggle.on_click(lambda _button: self.toggle_jobs())
            self.job_select.observe(self._on_pick, names="value")
            children += [self.printed, self.jobs_toggle, self.inspector]
        else:
            children += [self.job_detail, self.result]
        super().__init__(children)
        self.add_class("sieve-widget")
        self.add_class("sieve-progress")
        self.tick()
        if not self.finished:
            (ticker or get_ticker()).add(self)

    def toggle_jobs(self, show: bool | None = None) -> None:
        """Unfold (or fold) the job picker."""
        shown = self.inspector.layout.display != "none"
        show = not shown if show is None else show
        self.inspector.layout.display = "" if show else "none"
        if show:
            self.jobs_toggle.add_class("sieve-open")
        else:
            self.jobs_toggle.remove_class("sieve-open")

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
                self.errors.value = (
                    f'<div style="{INLINE["error"]}">progress display stopped: {message}</div>'
                )
                return False

    def _tick(self) -> bool:
        if self.finished:
            return False
        self.ticks += 1
        self.state.poll()
        done = self.state.all_done
        now = time.time()
        self._set(self.summary, self._summary_html(now))
        if self.single is None:
            if len(self.state.errors) != self._errors_drawn:
                self._errors_drawn = len(self.state.errors)
                self._set(self.errors, self._errors_html())
            self._draw_printed()
            if done or now - self._options_at >= 1.0:
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
        if self.single is not None:
            counts = next(iter(self.state.functions.values()))
            return single_html(counts, self.single, now)
        rows = [function_html(counts, now) for counts in self.state.functions.values()]
        if not rows:
            rows = [f'<div style="{INLINE["muted"]}">No jobs to follow.</div>']
        if len(self.state.functions) > 1:
            totals = self.state.totals()
            rows.insert(
                0,
                f'<div style="{INLINE["muted"]}">{plural(totals["total"], "job")} '
                f"across {len(self.state.functions)} functions</div>",
            )
        return '<div class="sieve-progress-summary">' + "".join(rows) + "</div>"

    def _errors_html(self) -> str:
        errors = self.state.errors
        if not errors:
            return ""
        items = []
        for future in errors[:_MAX_ERRORS_SHOWN]:
            exc = future.exception()
            if exc is not None:
                items.append(error_item_html(future, exc))
        more = len(errors) - _MAX_ERRORS_SHOWN
        listed = f" (the first {_MAX_ERRORS_SHOWN} listed)" if more > 0 else ""
        return (
            f'<details open><summary style="{INLINE["error"]}"><b>'
            f"{plural(len(errors), 'error')}</b>{listed}</summary>"
            f'<div style="margin-left:1em">{"".join(items)}</div></details>'
        )

    def _draw_printed(self) -> None:
        count = self.state.printed
        if count == self._printed_drawn:
            return
        self._printed_drawn = count
        if count and self._displayed:
            self._set(
                self.printed,
                f'<span style="{INLINE["muted"]}">'
                f"{plural(count, 'job')} printed output: pick one under Jobs "
                "to read it.</span>",
            )
            self.printed.layout.display = ""

    def _refresh_options(self, now: float) -> None:
        if self.state.version == self._options_version:
            return
        self._options_version, self._options_at = self.state.version, now
        chosen: dict[Any, str] = {}
        for future in self.state.errors[:20]:
            chosen.setdefault(future, "error")
        for future in list(self.state.processing.values())[:20]:
            chosen.setdefault(future, "running")
        for future in self.state.printed_futures[:20]:
            chosen.setdefault(future, self.state.status_of(future))
        for future in self.state.futures:
            if len(chosen) >= _MAX_JOB_OPTIONS:
                break
            chosen.setdefault(future, self.state.status_of(future))
        words = {"processing": "running"}
        options = [
            (f"{job_label(f)} · {words.get(status, status)}", index)
            for index, (f, status) in enumerate(chosen.items())
        ]
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
        key = (
            id(future),
            future.done(),
            getattr(future, "status", None),
            len(logs or ()),
            len(outputs or ()),
            getattr(future, "progress", None),
        )
        if force or key != self._detail_key:
            self._detail_key = key
            self._set(
                self.job_detail,
                job_detail_html(future) if self.single is None else self._single_logs_html(future),
            )

    @staticmethod
    def _single_logs_html(future: Future[Any]) -> str:
        """For one job the header already says its status: only what it printed or streamed."""
        parts = []
        logs = list(getattr(future, "logs", None) or [])
        if logs:
            parts.append('<div class="sieve-heading">Logs</div>' + logs_html(logs))
        outputs = list(getattr(future, "outputs", None) or [])
        if outputs and not future.done():
            shown = "".join(f"<li>{html.escape(text_preview(o, 200))}</li>" for o in outputs[-5:])
            parts.append(
                f'<div class="sieve-heading">{plural(len(outputs), "streamed output")}'
                f'</div><ol style="margin:2px 0">{shown}</ol>'
            )
        return "".join(parts)

    def _finish(self) -> None:
        try:
            self._draw_final()
        finally:
            # only now: whoever waits for `finished` (a cell, a test) then finds the final
            # state already published, the saved notebook's copy included
            self.finished = True

    def _draw_final(self) -> None:
        self.state.close()
        if self.show_result and self.single is not None:
            self.result.children = self._render_outcome(self.single)
        if self._displayed:
            try:
                from IPython.display import update_display

                update_display(
                    self._bundle(),
                    raw=True,  # type: ignore[no-untyped-call]
                    display_id=self.display_id,
                )
            except Exception:  # pragma: no cover - outside IPython there is no display to update
                pass

    def _render_outcome(self, future: Future[Any]) -> tuple[widgets.Widget, ...]:
        if future.cancelled():
            return (widgets.HTML(f'<div style="{INLINE["muted"]}">cancelled</div>'),)
        exc = future.exception()
        if exc is not None:
            return (render_error(exc),)
        heading = widgets.HTML('<div class="sieve-heading">Result</div>')
        return (heading, render_value(future.result(), inputs=self.inputs))

    # -- display -------------------------------------------------------------------------------
    def static_html(self) -> str:
        """The current state as plain HTML (what a saved notebook shows without widgets)."""
        body = self._summary_html(time.time())
        if self.single is None:
            body += self._errors_html()
        elif self.single.done() and not self.single.cancelled():
            exc = self.single.exception()
            if exc is not None:
                body += error_item_html(self.single, exc, open_=True)
            else:
                body += (
                    '<div class="sieve-heading">Result</div>'
                    f'<pre style="{INLINE["pre"]}">'
                    + html.escape(text_preview(self.single.result(), 5000))
                    + "</pre>"
                )
        return f'<div class="sieve-progress-static">{body}</div>'

    def static_text(self) -> str:
        """The current state as one line of plain text."""
        totals = self.state.totals()
        parts = [
            f"{totals[name]:,} {name}" if name != "error" else plural(totals[name], "error")
            for name in ("queued", "processing", "finished", "error", "cancelled")
            if totals[name]
        ]
        return f"sieve progress: {plural(totals['total'], 'job')}: " + ", ".join(parts)

    def _bundle(self) -> dict[str, Any]:
        bundle = dict(super()._repr_mimebundle_() or {})
        bundle["text/plain"] = self.static_text()
        bundle["text/html"] = self.static_html()
        return bundle

    def _ipython_display_(self) -> None:
        """Display with a display id, so the final state can replace the saved fallback."""
        from IPython.display import display

        self.claim_output()
        display(
            self._bundle(),
            raw=True,  # type: ignore[no-untyped-call]
            display_id=self.display_id,
        )

    def claim_output(self) -> None:
        """Show the jobs' output here (and how many printed) rather than under their cells."""
        self._displayed = True
        _claim(self.state.futures)
        self._printed_drawn = -1
        with self._draw_lock:
            if self.single is None and self.failed is None:
                self._draw_printed()
