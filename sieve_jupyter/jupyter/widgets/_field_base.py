"""The form field base: one row per parameter (a label, then the control with its help as a
caption under it and its error under that), and reading the value.

`Field.value()` returns the Python value to pass, `OMIT` to let the function's own default
apply, or raises `FormInputError` naming the field; subclasses only say how to build, read and
fill their control (`_fields.py` for values, `_file_fields.py` for files and expressions).
Messages read as a sentence with a subject and the advice for that control
(``image is required: upload a file or enter a path or URL``); once shown, an error follows
every change of its field and goes away as soon as the field is fixed.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable
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

__all__ = ["EMPTY", "OMIT", "Field", "message_of"]


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


OMIT: Any = _Sentinel("OMIT")  # leave the argument out: the function's default applies
EMPTY: Any = _Sentinel("EMPTY")  # the control holds nothing

_VERBS = ("is ", "are ", "does ", "has ", "must ", "allows ", "takes ")


def message_of(error: FormInputError) -> str:
    """What a field shows: the problem, then the advice (``x is required: enter a number``)."""
    return f"{error.problem}: {error.fix}" if error.fix else error.problem


class Field:
    """A labelled input for one parameter.

    Attributes:
        name: the parameter name.
        required: the function has no default for it.
        nullable: ``None`` is an accepted value (``Optional[...]``).
        control: the main input widget (slider, text box, upload, ...).
        label: the row's label (the type is its tooltip).
        widget: the rest of the row: the control(s), the help caption, the inline error.
    """

    kind = "field"
    #: what to do when a required field is empty (said after "NAME is required: ")
    required_hint = "enter a value"

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
        self.type_text = describe(schema, root)
        self.control: widgets.DOMWidget = self._build()
        # Controls that cannot show "nothing" (sliders, checkboxes) get a box to leave them unset.
        self.unset_box: widgets.Checkbox | None = None
        if self._needs_unset_box():
            self.unset_box = widgets.Checkbox(
                description="None" if self.nullable else "default",
                tooltip="pass None" if self.nullable else "leave it to the function's default",
                indent=False,
                layout=widgets.Layout(width="auto", margin="0 0 0 8px"),
            )
            self.unset_box.observe(self._on_unset, names="value")
        star = ' <span class="sieve-required" title="required">*</span>' if required else ""
        tooltip = html.escape(f"{name}: {self.type_text}")
        self.label = widgets.HTML(
            f'<span title="{tooltip}"><b>{html.escape(name)}</b>{star}</span>'
        )
        self.label.add_class("sieve-label")
        self.help = widgets.HTML(
            html.escape(self.description),
            layout=widgets.Layout(display="" if self.description else "none"),
        )
        self.help.add_class("sieve-caption")
        self.error = widgets.HTML("", layout=widgets.Layout(display="none"))
        self.error.add_class("sieve-field-error")
        row = list(self._row_controls())
        if self.unset_box is not None:
            row.append(self.unset_box)
        self.widget = widgets.VBox(
            [widgets.HBox(row, layout=widgets.Layout(align_items="center")), self.help, self.error],
        )
        self.widget.add_class("sieve-field")
        self.widget.add_class("sieve-cell")
        self.on_validity: Callable[[Field], None] | None = None
        self.reset()
        for source in self._watched():
            source.observe(self._on_edit, names="value")

    # -- what subclasses provide ------------------------------------------------------------
    def _build(self) -> widgets.DOMWidget:
        raise NotImplementedError

    def _row_controls(self) -> list[widgets.Widget]:
        return [self.control]

    def _watched(self) -> list[widgets.Widget]:
        """The widgets whose edits re-check a field that shows an error."""
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
            raise FormInputError(self.name, f"{self.name} is required", self.required_hint)
        problems = self._check(raw)
        if problems:
            raise FormInputError(
                self.name, self._with_subject("; ".join(problems)), self._fix_hint()
            )
        return raw

    def _with_subject(self, problem: str) -> str:
        """Messages from the schema checks start with a verb or a location: give them the
        field's name as their subject."""
        if problem.startswith(_VERBS):
            return f"{self.name} {problem}"
        if problem[:1].isalpha() and not problem.startswith(("'", '"')):
            return f"{self.name}: {problem}"
        return f"{self.name}{problem}" if problem.startswith(("[", ".")) else problem

    def _fix_hint(self) -> str:
        return ""

    @property
    def showing_error(self) -> bool:
        """True while the field shows an error."""
        return bool(self.error.layout.display != "none")

    def show_error(self, message: str) -> None:
        """Show `message` in red under the control."""
        self.error.value = html.escape(message, quote=False)
        self.error.layout.display = ""
        self.widget.add_class("sieve-invalid")

    def clear_error(self) -> None:
        """Hide the inline error."""
        self.error.value = ""
        self.error.layout.display = "none"
        self.widget.remove_class("sieve-invalid")

    def recheck(self) -> bool:
        """Validate again, updating the error shown; True when the field is valid."""
        try:
            self.value()
        except FormInputError as exc:
            self.show_error(message_of(exc))
            return False
        self.clear_error()
        return True

    def _on_edit(self, _change: dict[str, Any]) -> None:
        if self.showing_error:
            self.recheck()
            if self.on_validity is not None:
                self.on_validity(self)

    def _on_unset(self, change: dict[str, Any]) -> None:
        self.control.disabled = bool(change["new"])
        self._on_edit(change)
