"""A form for a Sieve function: one row per parameter, Submit pushes a job, the result shows.

As compact as magicgui's forms: the function's title and docstring summary on top (the
signature folded away), then one row per field (label, control, the help as a caption under
it; the type in the label's tooltip). Invalid input is reported under its field and nothing is
pushed. A pushed job is followed by a single-future `ProgressWidget` under the buttons
(status, logs, then the result under its own heading, or the error).
"""

from __future__ import annotations

import html
import typing
from typing import Any

import ipywidgets as widgets

from sieve_jupyter.jupyter.widgets._field_base import message_of
from sieve_jupyter.jupyter.widgets._fields import OMIT, Field, make_field
from sieve_jupyter.jupyter.widgets._progress import ProgressWidget
from sieve_jupyter.jupyter.widgets._schema import FormInputError
from sieve_jupyter.jupyter.widgets._style import INLINE, style_widget

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
        self.submit_button = widgets.Button(
            description="Submit",
            button_style="primary",
            icon="play",
            tooltip=f"push a job to {spec.name}",
        )
        self.reset_button = widgets.Button(description="Reset", tooltip="restore the defaults")
        self.submit_button.on_click(lambda _button: self.submit())
        self.reset_button.on_click(lambda _button: self.reset())
        self.message = widgets.HTML()
        self.message.add_class("sieve-message")
        self.output = widgets.VBox()
        header = widgets.HTML(self._header_html(spec))
        cells: list[widgets.Widget] = []
        for field in self.fields.values():
            field.on_validity = self._on_field_validity
            cells += [field.label, field.widget]
        body: widgets.Widget
        if cells:
            body = widgets.GridBox(
                cells,
                layout=widgets.Layout(
                    grid_template_columns="max-content minmax(0, 1fr)", width="100%"
                ),
            )
            body.add_class("sieve-fields")
        else:
            body = widgets.HTML(
                f'<span style="{INLINE["muted"]}">This function takes no inputs.</span>'
            )
        actions = widgets.HBox([self.submit_button, self.reset_button, self.message])
        actions.add_class("sieve-actions")
        super().__init__([style_widget(), header, body, actions, self.output])
        self.add_class("sieve-widget")
        self.add_class("sieve-form")

    @staticmethod
    def _header_html(spec: Any) -> str:
        name = str(spec.name)
        metadata = getattr(spec, "metadata", None)
        title = str(getattr(metadata, "title", "") or "") or name
        doc = str(getattr(spec, "doc", "") or "").strip()
        summary = doc.split("\n\n", 1)[0].replace("\n", " ") if doc else ""
        signature = str(getattr(spec, "signature", "") or "")
        parts = [f'<span class="sieve-title">{html.escape(title)}</span>']
        if title != name:
            parts.append(f'<span class="sieve-muted">{html.escape(name)}</span>')
        if summary:
            parts.append(f'<span class="sieve-muted">{html.escape(summary)}</span>')
        if signature:
            parts.append(
                '<details class="sieve-signature"><summary class="sieve-muted">'
                f"signature</summary><code>{html.escape(name + signature)}</code>"
                "</details>"
            )
        parts = ['<div class="sieve-header">', *parts, "</div>"]
        return "".join(parts)

    def set(self, **values: Any) -> SieveForm:
        """Fill fields programmatically, e.g. ``form.set(x=3, prompt="hi")``; returns the form."""
        for name, value in values.items():
            field = self.fields.get(name)
            if field is None:
                raise FormInputError(
                    name,
                    f"{self.handle.spec.name} has no such input.",
                    f"use one of: {', '.join(self.fields) or '(none)'}.",
                )
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
                field.show_error(message_of(exc))
                first = first or exc
                continue
            field.clear_error()
            if value is not OMIT:
                kwargs[name] = value
        if first is not None:
            raise first
        return kwargs

    def _on_field_validity(self, _field: Field) -> None:
        """A field with an error was edited: once none shows one, the form's note goes too."""
        invalid = [name for name, field in self.fields.items() if field.showing_error]
        self.message.value = self._fix_note(invalid) if invalid else ""

    @staticmethod
    def _fix_note(invalid: list[str]) -> str:
        noun = "input" if len(invalid) == 1 else "inputs"
        return (
            f'<span style="{INLINE["error"]}">Fix the marked {noun}: '
            f"{html.escape(', '.join(invalid))}</span>"
        )

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
            raise FormInputError(name, f"{name}{where}: {first['msg']}") from exc

    def submit(self) -> Any | None:
        """Validate, push one job and show its progress and result; return its future.

        Returns None, pushing nothing, when a field is invalid (the field shows why) or when the
        push itself is refused (the message shows the error).
        """
        try:
            kwargs = self.values()
        except FormInputError:
            invalid = [name for name, field in self.fields.items() if field.showing_error]
            self.message.value = self._fix_note(invalid)
            return None
        try:
            future = self.handle.push(**kwargs)
        except Exception as exc:  # e.g. a missing secret or a stopped function: show, don't raise
            self.message.value = (
                f'<span style="{INLINE["error"]}">Could not push: '
                f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>"
            )
            return None
        self.futures.append(future)
        self.message.value = ""
        self.progress = ProgressWidget([future], show_result=True, inputs=kwargs)
        self.progress.claim_output()  # what the job prints shows here, under the form
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
        return self.progress.result.children[-1]

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(super()._repr_mimebundle_(**kwargs) or {})
        names = ", ".join(self.fields) or "no inputs"
        bundle["text/plain"] = f"sieve form for {self.handle.spec.name} ({names})"
        return bundle
