"""A form for a Sieve function: one field per parameter, Submit pushes a job, the result shows.

Invalid input is reported next to its field and nothing is pushed. A pushed job is followed by a
single-future `ProgressWidget` under the button (status, logs, then the result or the error).
"""

from __future__ import annotations

import html
import typing
from typing import Any

import ipywidgets as widgets

from sieve_jupyter.jupyter.widgets._fields import OMIT, Field, make_field
from sieve_jupyter.jupyter.widgets._progress import ProgressWidget
from sieve_jupyter.jupyter.widgets._schema import FormInputError

__all__ = ["SieveForm", "resolve_handle"]

# Field kinds whose form value is JSON-shaped while the function may want a Python type
# (an Enum member for a dropdown, a pydantic model or tuple for JSON entry).
_COERCED_KINDS = ("choice", "json")


def _type_adapters(handle: Any, fields: dict[str, Field]) -> dict[str, Any]:
    """pydantic adapters turning form values into the parameters' declared Python types."""
    target = getattr(handle, "__wrapped__", None)
    if isinstance(target, type):
        target = getattr(target, "__predict__", None)
    if target is None:
        return {}
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable hints (a forward reference): the worker gets JSON values
        return {}
    from pydantic import TypeAdapter

    adapters: dict[str, Any] = {}
    for name, field in fields.items():
        if field.kind in _COERCED_KINDS and name in hints:
            try:
                adapters[name] = TypeAdapter(hints[name])
            except Exception:  # a type pydantic cannot handle is passed through as entered
                continue
    return adapters


def resolve_handle(target: Any) -> Any:
    """A function handle from a handle, a registered name, or a decorated object."""
    if isinstance(target, str):
        from sieve_jupyter.sdk import function

        return function.get(target)
    if hasattr(target, "spec") and hasattr(target, "push"):
        return target
    raise TypeError(
        f"sieve.form() needs a Sieve function: got {type(target).__name__}. Fix: decorate it with "
        "@sieve.function(name=...) or @sieve.Model(name=...), or pass its registered name."
    )


class SieveForm(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types
    """An input form for one function (build it with `sieve.form(fn)`).

    Attributes:
        handle: the function handle jobs are pushed to.
        fields: the fields by parameter name, in signature order.
        submit_button: the Submit button (``.click()`` submits programmatically).
        futures: every job this form pushed, oldest first.
        progress: the progress/result view of the latest job (None before the first submit).
    """

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        spec = handle.spec
        schema: dict[str, Any] = dict(spec.inputs or {})
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        self.fields: dict[str, Field] = {
            name: make_field(name, prop, schema, required=name in required)
            for name, prop in properties.items()
            if isinstance(prop, dict)
        }
        self._adapters = _type_adapters(handle, self.fields)
        self.futures: list[Any] = []
        self.progress: ProgressWidget | None = None
        self.submit_button = widgets.Button(description="Submit", button_style="primary",
                                            icon="play", tooltip=f"push a job to {spec.name}")
        self.reset_button = widgets.Button(description="Reset", tooltip="restore the defaults")
        self.submit_button.on_click(lambda _button: self.submit())
        self.reset_button.on_click(lambda _button: self.reset())
        self.message = widgets.HTML()
        self.output = widgets.VBox()
        header = widgets.HTML(self._header_html(spec))
        body: list[widgets.Widget] = [f.widget for f in self.fields.values()]
        if not body:
            body = [widgets.HTML('<span style="color:#777">This function takes no inputs.</span>')]
        super().__init__([header, *body,
                          widgets.HBox([self.submit_button, self.reset_button, self.message]),
                          self.output],
                         layout=widgets.Layout(border="1px solid #ddd", padding="8px"))
        self.add_class("sieve-form")

    @staticmethod
    def _header_html(spec: Any) -> str:
        doc = str(getattr(spec, "doc", "") or "").strip()
        summary = doc.split("\n\n", 1)[0] if doc else ""
        signature = str(getattr(spec, "signature", "") or "")
        sig = f' <code style="color:#555">{html.escape(signature)}</code>' if signature else ""
        text = (f'<div style="color:#555;margin-top:2px">{html.escape(summary)}</div>'
                if summary else "")
        return (f'<div style="margin-bottom:8px"><b style="font-size:1.1em">'
                f"{html.escape(str(spec.name))}</b>{sig}{text}</div>")

    def set(self, **values: Any) -> SieveForm:
        """Fill fields programmatically, e.g. ``form.set(x=3, prompt="hi")``; returns the form."""
        for name, value in values.items():
            field = self.fields.get(name)
            if field is None:
                raise FormInputError(name, f"{self.handle.spec.name} has no such input.",
                                     f"use one of: {', '.join(self.fields) or '(none)'}.")
            field.set(value)
        return self

    def values(self) -> dict[str, Any]:
        """The keyword arguments the fields hold now.

        Raises:
            FormInputError: for the first invalid field (every invalid field shows its message).
        """
        kwargs: dict[str, Any] = {}
        first: FormInputError | None = None
        for name, field in self.fields.items():
            try:
                value = self._coerce(name, field.value())
            except FormInputError as exc:
                field.show_error(f"{exc.problem} {('Fix: ' + exc.fix) if exc.fix else ''}".strip())
                first = first or exc
                continue
            field.clear_error()
            if value is not OMIT:
                kwargs[name] = value
        if first is not None:
            raise first
        return kwargs

    def _coerce(self, name: str, value: Any) -> Any:
        adapter = self._adapters.get(name)
        if adapter is None or value is None or value is OMIT:
            return value
        from pydantic import ValidationError

        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
            raise FormInputError(name, f"{where + ': ' if where else ''}{first['msg']}.",
                                 "correct the value as the message says.") from exc

    def submit(self) -> Any | None:
        """Validate, push one job and show its progress and result; return its future.

        Returns None, pushing nothing, when a field is invalid (the field shows why) or when the
        push itself is refused (the message shows the error).
        """
        try:
            kwargs = self.values()
        except FormInputError as exc:
            self.message.value = (f'<span style="color:#d32f2f">Fix the marked input: '
                                  f"{html.escape(exc.field)}</span>")
            return None
        try:
            future = self.handle.push(**kwargs)
        except Exception as exc:  # e.g. a missing secret or a stopped function: show, don't raise
            self.message.value = (
                f'<span style="color:#d32f2f">Could not push: {html.escape(type(exc).__name__)}: '
                f"{html.escape(str(exc))}</span>"
            )
            return None
        self.futures.append(future)
        job_id = getattr(future, "job_id", "")
        self.message.value = (
            f'<span style="color:#555">pushed job {html.escape(str(job_id))}</span>'
        )
        self.progress = ProgressWidget([future], show_result=True)
        self.output.children = (self.progress,)
        return future

    def reset(self) -> None:
        """Put every field back to its default and clear messages."""
        for field in self.fields.values():
            field.reset()
        self.message.value = ""

    @property
    def result_widget(self) -> widgets.Widget | None:
        """The widget showing the latest job's result or error, once it is done."""
        if self.progress is None or not self.progress.result.children:
            return None
        return self.progress.result.children[0]

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(super()._repr_mimebundle_(**kwargs) or {})
        names = ", ".join(self.fields) or "no inputs"
        bundle["text/plain"] = f"sieve form for {self.handle.spec.name} ({names})"
        return bundle
