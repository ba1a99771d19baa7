"""ipywidgets for sieve-jupyter: input forms from a function's schema and live job progress.

    sieve.form(fn)                 # a form: fill in, Submit pushes a job, the result shows
    sieve.progress(futures)        # live per-function progress of one or many futures
    display_future(future)         # what a JobFuture shows as a cell's output

Widgets redraw from one throttled thread (a few times per second), so following 10,000 futures
costs the kernel and the frontend a bounded number of messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from sieve_jupyter.jupyter.widgets._form import SieveForm, resolve_handle
from sieve_jupyter.jupyter.widgets._progress import ProgressWidget
from sieve_jupyter.jupyter.widgets._schema import FormInputError

__all__ = [
    "FormInputError",
    "ProgressWidget",
    "SieveForm",
    "display_future",
    "form",
    "progress",
]


def form(target: Any) -> SieveForm:
    """Build an input form for a Sieve function.

    Args:
        target: a function or model handle (what ``@sieve.function`` returns), or its
            registered name (resolved with ``sieve.function.get``).

    Returns:
        A widget; display it (or leave it as the cell's last expression). Its ``submit()``
        (or the Submit button) pushes a job and shows its progress and result.

    Raises:
        TypeError: `target` is neither a handle nor a name.
        FunctionNotFoundError: no function of that name is registered in this kernel.
    """
    return SieveForm(resolve_handle(target))


def progress(futures: Future[Any] | Iterable[Future[Any]]) -> ProgressWidget:
    """Follow one future or many (across functions) in a live progress widget.

    Shows per function a bar and counts of queued/processing/finished/error jobs, elapsed time,
    rate and ETA, the errors with tracebacks, and each job's logs and streamed outputs.
    A single future also shows its result when done.
    """
    items = [futures] if isinstance(futures, Future) else list(futures)
    for item in items:
        if not isinstance(item, Future):
            raise TypeError(
                f"sieve.progress() takes futures: got {type(item).__name__}. "
                "Fix: pass what .push() returns, or a list of them."
            )
    return ProgressWidget(items)


def display_future(future: Future[Any]) -> None:
    """Display one future as a live status line, its logs, then its result or error."""
    from IPython.display import display

    display(ProgressWidget([future], show_result=True))  # type: ignore[no-untyped-call]
