"""One form field per function parameter: pick a widget from the JSON Schema, read and check it.

`make_field(name, schema, root, required=...)` returns a `Field` whose `.widget` is the row to show
(label, control, help text, inline error) and whose `.value()` returns the Python value to pass,
`OMIT` to let the function's own default apply, or raises `FormInputError` naming the field.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

import ipywidgets as widgets

from sieve_jupyter.jupyter.widgets._field_base import EMPTY, OMIT, Field
from sieve_jupyter.jupyter.widgets._file_fields import ExpressionField, FileField
from sieve_jupyter.jupyter.widgets._schema import (
    FormInputError,
    Schema,
    describe,
    split_optional,
    validate,
)

__all__ = ["OMIT", "Field", "make_field"]

# Parameter names that usually carry prose or code, so they get a multi-line box.
_LONG_TEXT_WORDS = (
    "text",
    "prompt",
    "content",
    "body",
    "message",
    "description",
    "query",
    "code",
    "document",
    "html",
    "markdown",
    "caption",
    "transcript",
    "script",
)
_FILE_FORMATS = ("sieve-file", "path", "file-path", "binary")


class NumberField(Field):
    """`int`/`float`: a slider when both bounds are known, otherwise a number box with step
    buttons (a text box, so an optional number can be left empty)."""

    kind = "number"

    @property
    def integer(self) -> bool:
        return self.schema.get("type") == "integer"

    @property
    def required_hint(self) -> str:  # type: ignore[override]
        return "enter a whole number" if self.integer else "enter a number"

    def _build(self) -> widgets.DOMWidget:
        integer = self.integer
        low, high = _bounds(self.schema, integer)
        self.steps: list[widgets.Button] = []
        if low is not None and high is not None and high >= low:
            step = self.schema.get("multipleOf")
            layout = widgets.Layout(width="100%", max_width="420px")
            if integer:
                return widgets.IntSlider(
                    min=int(low),
                    max=int(high),
                    step=int(step or 1),
                    value=int(low),
                    continuous_update=False,
                    layout=layout,
                )
            fstep = float(step) if step else _nice_step(high - low)
            return widgets.FloatSlider(
                min=low,
                max=high,
                step=fstep,
                value=low,
                continuous_update=False,
                layout=layout,
                readout_format=_readout_format(fstep),
            )
        # A text box, not IntText/FloatText: those cannot be empty, so a required number would
        # silently start as 0 and an Optional one could not be left blank.
        placeholder = ("whole number" if integer else "number") + (
            " or empty for None" if self.nullable else ""
        )
        box = widgets.Text(value="", placeholder=placeholder, layout=widgets.Layout(width="160px"))
        self._step = float(self.schema.get("multipleOf") or (1 if integer else 0.1))
        self._low, self._high = low, high
        for sign, icon, tip in ((-1, "minus", "smaller"), (1, "plus", "larger")):
            button = widgets.Button(
                icon=icon,
                tooltip=f"{tip} by {self._step:g}",
                layout=widgets.Layout(width="26px", padding="0"),
            )
            button.add_class("sieve-step")
            button.on_click(lambda _b, sign=sign: self.step(sign))
            self.steps.append(button)
        return box

    def _row_controls(self) -> list[widgets.Widget]:
        return [self.control, *self.steps]

    def step(self, sign: int) -> None:
        """One step up (`sign` 1) or down (-1), from the box's number, the default or 0."""
        try:
            current = self._read()
        except FormInputError:
            return  # the box holds no number: its error says so
        if current is EMPTY:
            current = self.default if isinstance(self.default, (int, float)) else 0
        value = float(current) + sign * self._step
        if self._low is not None:
            value = max(value, self._low)
        if self._high is not None:
            value = min(value, self._high)
        self._write(int(round(value)) if self.integer else round(value, 10))

    @property
    def is_slider(self) -> bool:
        """Both bounds are known, so the control is a slider."""
        return isinstance(self.control, (widgets.IntSlider, widgets.FloatSlider))

    def _needs_unset_box(self) -> bool:
        return self.is_slider and (self.nullable or (not self.required and not self.has_default))

    def _read(self) -> Any:
        integer = self.integer
        if self.is_slider:
            value = self.control.value
            return int(value) if integer else float(value)
        text = str(self.control.value).strip().replace("_", "")
        if not text:
            return EMPTY
        try:
            number = float(text)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise FormInputError(self.name, f"{text!r} is not {kind}") from None
        if not integer:
            return number
        try:
            return int(text)
        except ValueError:
            if number.is_integer():
                return int(number)  # "1e3" is a whole number too
            raise FormInputError(self.name, f"{text!r} is not a whole number") from None

    def _write(self, value: Any) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise FormInputError(self.name, f"{value!r} is not a number", self.required_hint)
        integer = self.integer
        if not self.is_slider:
            self.control.value = str(int(value) if integer and float(value).is_integer() else value)
            return
        problems = validate(value, self.schema, self.root)
        if problems:  # a slider would silently clamp the value: say so instead
            raise FormInputError(self.name, self._with_subject("; ".join(problems)))
        self.control.value = int(value) if integer else float(value)


class BoolField(Field):
    """`bool`: a checkbox."""

    kind = "bool"

    def _build(self) -> widgets.DOMWidget:
        return widgets.Checkbox(value=False, indent=False, layout=widgets.Layout(width="auto"))

    def _needs_unset_box(self) -> bool:
        return self.nullable or (not self.required and not self.has_default)

    def _write(self, value: Any) -> None:
        self.control.value = bool(value)


class ChoiceField(Field):
    """`Literal`/`Enum`: a dropdown, or a selection slider for a range of numbers."""

    kind = "choice"
    required_hint = "pick one of the listed values"

    def _build(self) -> widgets.DOMWidget:
        values = list(self.schema.get("enum") or [])
        options = [(_choice_label(v), v) for v in values]
        numeric = len(values) >= 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        )
        if numeric:
            ordered = sorted(options, key=lambda o: o[1])
            return widgets.SelectionSlider(
                options=ordered,
                value=ordered[0][1],
                continuous_update=False,
                layout=widgets.Layout(width="100%", max_width="420px"),
            )
        return widgets.Dropdown(
            options=options,
            value=values[0] if values else None,
            layout=widgets.Layout(width="220px"),
        )

    def _needs_unset_box(self) -> bool:
        return self.nullable or (not self.required and not self.has_default)

    def _write(self, value: Any) -> None:
        value = getattr(value, "value", value)  # an Enum member stands for its value
        if value not in list(self.schema.get("enum") or []):
            allowed = ", ".join(repr(v) for v in self.schema.get("enum") or [])
            raise FormInputError(
                self.name, f"{value!r} is not one of {allowed}", "pick one of the listed values"
            )
        self.control.value = value


class ConstField(Field):
    """A parameter with a single allowed value (``Literal["x"]``): shown, not editable."""

    kind = "const"

    def _build(self) -> widgets.DOMWidget:
        return widgets.HTML(f"<code>{html.escape(repr(self.schema.get('const')))}</code>")

    def _read(self) -> Any:
        return self.schema.get("const")

    def _write(self, value: Any) -> None:
        if value != self.schema.get("const"):
            raise FormInputError(self.name, f"{self.name} takes only {self.schema.get('const')!r}")


class TextField(Field):
    """`str`: a text box, multi-line when the parameter looks like prose or code."""

    kind = "text"
    required_hint = "enter some text"

    def _build(self) -> widgets.DOMWidget:
        name = self.name.lower()
        max_len = self.schema.get("maxLength")
        default = self.default if isinstance(self.default, str) else ""
        multiline = (
            any(word in name for word in _LONG_TEXT_WORDS)
            or "\n" in default
            or len(default) > 60
            or (isinstance(max_len, int) and max_len >= 200)
        ) and not (isinstance(max_len, int) and max_len < 80)
        placeholder = "(empty = None)" if self.nullable else ""
        if multiline:
            return widgets.Textarea(
                value="",
                placeholder=placeholder,
                rows=3,
                layout=widgets.Layout(width="100%", max_width="420px"),
            )
        return widgets.Text(
            value="",
            placeholder=placeholder,
            layout=widgets.Layout(width="100%", max_width="420px"),
        )

    def _read(self) -> Any:
        text = self.control.value
        # An empty box means "nothing" unless the default itself is a (non-empty) string.
        if text == "" and (self.nullable or self.required or not self.has_default):
            return EMPTY
        return text

    def _write(self, value: Any) -> None:
        self.control.value = str(value)


class JsonField(Field):
    """`list`/`dict`/nested models/`Any`: JSON typed into a box, parsed and validated."""

    kind = "json"

    @property
    def required_hint(self) -> str:  # type: ignore[override]
        return f"enter JSON, e.g. {_json_example(self.schema, self.root)}"

    def _build(self) -> widgets.DOMWidget:
        example = _json_example(self.schema, self.root)
        layout = widgets.Layout(width="100%", max_width="420px")
        if self.schema.get("type") == "array" and len(example) < 40:
            return widgets.Text(value="", placeholder=example, layout=layout)  # a short list
        return widgets.Textarea(value="", placeholder=example, rows=2, layout=layout)

    def _read(self) -> Any:
        text = self.control.value.strip()
        if not text:
            return EMPTY
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if not self.schema.get("type") and "anyOf" not in self.schema:
                return text  # a free-form parameter (Any) takes plain text too
            raise FormInputError(
                self.name,
                f"{self.name} is not valid JSON ({exc.msg} at line {exc.lineno}, "
                f"column {exc.colno})",
                f"write JSON, e.g. {_json_example(self.schema, self.root)}",
            ) from exc

    def _write(self, value: Any) -> None:
        self.control.value = json.dumps(value, indent=None, default=str)

    def _fix_hint(self) -> str:
        return f"write JSON matching {describe(self.schema, self.root)}, e.g. " + _json_example(
            self.schema, self.root
        )


def make_field(name: str, schema: Schema, root: Schema, *, required: bool) -> Field:
    """Choose the field class for one parameter's schema (see the module docstring)."""
    inner, _nullable = split_optional(schema, root)
    python_type = str(inner.get("x-python-type") or "")
    cls: type[Field]
    if "const" in inner:
        cls = ConstField
    elif "enum" in inner:
        cls = ChoiceField
    elif (
        "x-sieve-type" in inner
        or inner.get("format") in _FILE_FORMATS
        or ("PIL" in python_type and "Image" in python_type)
        or python_type in ("pathlib.Path", "pathlib.PosixPath")
    ):
        cls = FileField
    elif python_type:
        cls = ExpressionField
    elif inner.get("type") in ("integer", "number"):
        cls = NumberField
    elif inner.get("type") == "boolean":
        cls = BoolField
    elif inner.get("type") == "string":
        cls = TextField
    else:
        cls = JsonField
    return cls(name, schema, root, required=required)


def _bounds(schema: Schema, integer: bool) -> tuple[float | None, float | None]:
    """Inclusive slider bounds from (exclusive) minimum/maximum; exclusive int bounds move by 1."""
    low = schema.get("minimum")
    high = schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if low is None and isinstance(ex_low, (int, float)):
        low = math.floor(ex_low) + 1 if integer else ex_low
    if high is None and isinstance(ex_high, (int, float)):
        high = math.ceil(ex_high) - 1 if integer else ex_high
    if integer:
        low = math.ceil(low) if isinstance(low, (int, float)) else None
        high = math.floor(high) if isinstance(high, (int, float)) else None

    def finite(bound: Any) -> float | None:
        return float(bound) if isinstance(bound, (int, float)) and math.isfinite(bound) else None

    return finite(low), finite(high)


def _nice_step(span: float) -> float:
    """A round slider step giving about a hundred positions over `span`."""
    if span <= 0:
        return 0.01
    raw = span / 100
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if raw <= mult * power:
            return float(mult * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _readout_format(step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 2
    return f".{min(decimals, 6)}f"


def _choice_label(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _json_example(schema: Schema, root: Schema, depth: int = 0) -> str:
    """A small JSON sample of the expected shape, used as placeholder and in error fixes."""
    schema, _ = split_optional(schema, root)
    kind = schema.get("type")
    if depth > 2:
        return "…"
    if "enum" in schema and schema["enum"]:
        return json.dumps(schema["enum"][0])
    if kind == "array":
        items = schema.get("items")
        inner = _json_example(items, root, depth + 1) if isinstance(items, dict) else "1"
        return f"[{inner}, {inner}]"
    if kind == "object":
        props = schema.get("properties")
        if isinstance(props, dict) and props:
            parts = [
                f'"{k}": {_json_example(v, root, depth + 1)}'
                for k, v in list(props.items())[:3]
                if isinstance(v, dict)
            ]
            return "{" + ", ".join(parts) + "}"
        extra = schema.get("additionalProperties")
        inner = _json_example(extra, root, depth + 1) if isinstance(extra, dict) else "1"
        return '{"key": ' + inner + "}"
    samples = {"integer": "1", "number": "1.5", "string": '"text"', "boolean": "true"}
    return samples.get(str(kind), '{"any": "JSON"}')
