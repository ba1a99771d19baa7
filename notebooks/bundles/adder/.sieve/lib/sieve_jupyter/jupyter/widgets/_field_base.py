"""The form field base: a labelled control for one parameter, its inline error, and reading it.

`Field.value()` returns the Python value to pass, `OMIT` to let the function's own default
apply, or raises `FormInputError` naming the field; subclasses only say how to build, read and
fill their control (`_fields.py` for values, `_file_fields.py` for files and expressions).
"""

from __future__ import annotations

import contextlib
import html
from typing import Any

import ipywidgets as widgets

from sieve_jupyter.jupyter.widgets._schema import (
    FormInputError,
    Schema,
    describe,
    resolve,
    split_optional,
    validate,
)

__all__ = ["EMPTY", "OMIT", "Field"]


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


OMIT: Any = _Sentinel("OMIT")  # leave the argument out: the function's default applies
EMPTY: Any = _Sentinel("EMPTY")  # the control holds nothing


class Field:
    """A labelled input for one parameter.

    Attributes:
        name: the parameter name.
        required: the function has no default for it.
        nullable: ``None`` is an accepted value (``Optional[...]``).
        control: the main input widget (slider, text box, upload, ...).
        widget: the row to display: label, control, help text and inline error.
    """

    kind = "field"

    def __init__(self, name: str, schema: Schema, root: Schema, *, required: bool) -> None:
        self.name = name
        self.required = required
        self.root = root
        outer = resolve(schema, root)
        inner, self.nullable = split_optional(schema, root)
        self.schema: Schema = inner
        self.has_default = "default" in outer
        self.default: Any = outer.get("default")
        self.description: str = str(outer.get("description") or inner.get("description") or "")
        self.control: widgets.DOMWidget = self._build()
        # Controls that cannot show "nothing" (sliders, checkboxes) get a box to leave them unset.
        self.unset_box: widgets.Checkbox | None = None
        if self._needs_unset_box():
            self.unset_box = widgets.Checkbox(
                description="None" if self.nullable else "use default",
                indent=False,
                layout=widgets.Layout(width="auto", margin="0 0 0 8px"),
            )
            self.unset_box.observe(self._on_unset, names="value")
        star = ' <span style="color:#d32f2f" title="required">*</span>' if required else ""
        type_text = html.escape(describe(schema, root))
        self.label = widgets.HTML(
            f'<b>{html.escape(name)}</b>{star}<br><span style="color:#777;font-size:0.85em">'
            f"{type_text}</span>",
            layout=widgets.Layout(width="190px", min_width="190px"),
        )
        self.help = widgets.HTML(
            f'<span style="color:#666;font-size:0.9em">{html.escape(self.description)}</span>'
            if self.description
            else "",
            layout=widgets.Layout(margin="0 0 0 198px"),
        )
        self.error = widgets.HTML("", layout=widgets.Layout(margin="0 0 0 198px"))
        row = [self.label, *self._row_controls()]
        if self.unset_box is not None:
            row.append(self.unset_box)
        self.widget = widgets.VBox(
            [widgets.HBox(row, layout=widgets.Layout(align_items="flex-start")), self.help,
             self.error],
            layout=widgets.Layout(margin="0 0 6px 0"),
        )
        self.widget.add_class("sieve-field")
        self.reset()

    # -- what subclasses provide ------------------------------------------------------------
    def _build(self) -> widgets.DOMWidget:
        raise NotImplementedError

    def _row_controls(self) -> list[widgets.Widget]:
        return [self.control]

    def _needs_unset_box(self) -> bool:
        return False

    def _read(self) -> Any:
        """The control's content as a Python value, or `EMPTY`."""
        return getattr(self.control, "value", EMPTY)

    def _write(self, value: Any) -> None:
        self.control.value = value

    def _check(self, value: Any) -> list[str]:
        return validate(value, self.schema, self.root)

    # -- the shared behaviour -----------------------------------------------------------------
    def reset(self) -> None:
        """Put the default (or nothing) back into the control."""
        if self.has_default and self.default is not None:
            # a default the control cannot show stays in the function: leave the control blank
            with contextlib.suppress(FormInputError, ValueError, TypeError):
                self.set(self.default)
        elif self.unset_box is not None:
            self.unset_box.value = self.nullable or not self.required
        self.clear_error()

    def set(self, value: Any) -> None:
        """Fill the control programmatically (``None`` leaves an Optional field empty)."""
        if self.unset_box is not None:
            self.unset_box.value = value is None
            if value is None:
                return
        if value is None:
            self._clear()
            return
        self._write(value)

    def _clear(self) -> None:
        """Empty the control (for controls that can be empty: text boxes, uploads)."""
        if isinstance(self.control, (widgets.Text, widgets.Textarea)):
            self.control.value = ""

    def value(self) -> Any:
        """The value to pass, `OMIT` for "use the function's default", or raise `FormInputError`."""
        raw = EMPTY if self.unset_box is not None and self.unset_box.value else self._read()
        if raw is EMPTY:
            if self.nullable:
                return None
            if not self.required:
                return OMIT
            raise FormInputError(self.name, "is required.", "enter a value.")
        problems = self._check(raw)
        if problems:
            raise FormInputError(self.name, "; ".join(problems), self._fix_hint())
        return raw

    def _fix_hint(self) -> str:
        return f"enter a {describe(self.schema, self.root)}."

    def show_error(self, message: str) -> None:
        """Show `message` in red under the control."""
        self.error.value = f'<span style="color:#d32f2f">{html.escape(message)}</span>'

    def clear_error(self) -> None:
        """Hide the inline error."""
        self.error.value = ""

    def _on_unset(self, change: dict[str, Any]) -> None:
        self.control.disabled = bool(change["new"])
