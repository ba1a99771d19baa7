"""ipywidgets for sieve-jupyter: input forms from a function's schema and live job progress.

    sieve.form(fn)                 # a form: fill in, Submit pushes a job, the result shows
    sieve.progress(futures)        # live per-function progress of one or many futures
    display_future(future)         # what a JobFuture shows as a cell's output

Widgets redraw from one throttled thread (a few times per second), so following 10,000 futures
costs the kernel and the frontend a bounded number of messages. This module imports ipywidgets
only when a widget is built: `progress` first takes over its jobs' output (see
`jupyter/_routing.py`), so nothing the jobs print while ipywidgets loads floods the cell.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from sieve_jupyter.jupyter.widgets._schema import FormInputError

if TYPE_CHECKING:
    from sieve_jupyter.jupyter.widgets._form import SieveForm
    from sieve_jupyter.jupyter.widgets._progress import ProgressWidget

__all__ = [
    "FormInputError",
    "ProgressWidget",
    "SieveForm",
    "display_future",
    "form",
    "progress",
]


def __getattr__(name: str) -> Any:
    if name == "SieveForm":
        from sieve_jupyter.jupyter.widgets._form import SieveForm

        return SieveForm
    if name == "ProgressWidget":
        from sieve_jupyter.jupyter.widgets._progress import ProgressWidget

        return ProgressWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from sieve_jupyter.jupyter.widgets._form import SieveForm, resolve_handle

    return SieveForm(resolve_handle(target))


def progress(futures: Future[Any] | Iterable[Future[Any]]) -> ProgressWidget:
    """Follow one future or many (across functions) in a live progress widget.

    Shows per function a bar and counts of queued/running/finished/error jobs, elapsed time,
    rate and ETA, the errors with tracebacks, and each job's logs and streamed outputs. What
    the jobs print lives in the widget from now on, not under the cells that pushed them.
    A single future also shows its result when done.
    """
    items = [futures] if isinstance(futures, Future) else list(futures)
    for item in items:
        if not isinstance(item, Future):
            raise TypeError(
                f"sieve.progress() takes futures: got {type(item).__name__}. "
                "Fix: pass what .push() returns, or a list of them."
            )
    from sieve_jupyter.jupyter._routing import claim_output

    claim_output(items)  # before ipywidgets loads: the jobs may be printing already
    from sieve_jupyter.jupyter.widgets._progress import ProgressWidget

    return ProgressWidget(items)


def display_future(future: Future[Any]) -> None:
    """Display one future as a live status line, its logs, then its result or error."""
    from IPython.display import display

    from sieve_jupyter.jupyter.widgets._progress import ProgressWidget

    display(ProgressWidget([future], show_result=True))  # type: ignore[no-untyped-call]
