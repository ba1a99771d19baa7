"""The form as a user drives it: fill in, submit, see the result or the inline errors."""

from __future__ import annotations

import enum
import time
from typing import Annotated, Any

import pytest
from _widget_doubles import FakeHandle
from pydantic import BaseModel
from pydantic import Field as PydanticField

from sieve_jupyter.jupyter.widgets import FormInputError, SieveForm, form
from sieve_jupyter.spec._schema import inputs_schema


def resize(
    width: Annotated[int, PydanticField(ge=1, le=4096)],
    label: Annotated[str, PydanticField(min_length=2)] = "img",
    scale: float = 1.0,
) -> dict[str, Any]:
    """Resize a picture.

    Args:
        width: target width in pixels
    """
    return {"width": width, "label": label, "scale": scale}


def make_handle(fn: Any = resize) -> FakeHandle:
    return FakeHandle("resize", inputs_schema(fn), fn, doc=fn.__doc__ or "")


def wait_for_result(f: SieveForm) -> Any:
    assert f.progress is not None
    for _ in range(500):
        f.progress.tick()
        if f.result_widget is not None:
            return f.result_widget
        time.sleep(0.01)
    raise AssertionError("no result shown")


def test_form_lists_fields_with_header() -> None:
    f = form(make_handle())
    assert list(f.fields) == ["width", "label", "scale"]
    header = f.children[1].value
    assert "resize" in header and "Resize a picture." in header
    # the signature is folded away, the type is the label's tooltip
    assert "<details" in header and "signature</summary>" in header
    assert 'title="width: int (1 ≤ x ≤ 4096)"' in f.fields["width"].label.value
    assert f._repr_mimebundle_()["text/plain"] == "sieve form for resize (width, label, scale)"


def test_submit_pushes_and_shows_the_result() -> None:
    handle = make_handle()
    f = form(handle)
    f.set(width=640, label="thumb")
    future = f.submit()
    assert future is not None
    assert handle.pushed == [{"width": 640, "label": "thumb", "scale": 1.0}]
    shown = wait_for_result(f)
    assert shown.outputs[0]["data"]["application/json"] == {
        "width": 640,
        "label": "thumb",
        "scale": 1.0,
    }
    assert "finished" in f.progress.summary.value  # type: ignore[union-attr]
    heading = f.progress.result.children[0]  # type: ignore[union-attr]
    assert "Result" in heading.value


def test_submit_button_click_submits() -> None:
    handle = make_handle()
    f = form(handle)
    f.set(width=2)
    f.submit_button.click()
    assert len(handle.pushed) == 1


def test_invalid_input_shows_inline_and_pushes_nothing() -> None:
    handle = make_handle()
    f = form(handle)
    f.set(width=5, label="x")
    assert f.submit() is None
    assert handle.pushed == []
    error = f.fields["label"].error.value
    assert error == "label is 1 character long; needs at least 2"
    assert "Fix the marked input: label" in f.message.value
    f.set(label="xy")  # fixing the field clears its error and the form's note at once
    assert f.fields["label"].error.value == "" and f.message.value == ""
    assert f.submit() is not None


def test_out_of_range_slider_value_is_refused_not_clamped() -> None:
    f = form(make_handle())
    with pytest.raises(FormInputError, match="width: 5000 is out of range: must be ≤ 4096"):
        f.set(width=5000)


def test_error_result_shows_traceback() -> None:
    def explode(x: int) -> int:
        raise RuntimeError(f"cannot handle {x}")

    f = form(FakeHandle("explode", inputs_schema(explode), explode))
    f.set(x=3)
    f.submit()
    shown = wait_for_result(f)
    assert "RuntimeError: cannot handle 3" in shown.value and "Error" in shown.value


def test_unknown_field_and_bad_target_are_clear() -> None:
    f = form(make_handle())
    with pytest.raises(FormInputError, match="use one of: width, label, scale"):
        f.set(height=3)
    with pytest.raises(TypeError, match="Fix: decorate it"):
        form(42)


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


class Crop(BaseModel):
    left: int
    top: int = 0


def test_values_become_the_declared_python_types() -> None:
    def shape(size: Size, crop: Crop, pair: tuple[int, int] = (1, 2)) -> str:
        return "ok"

    handle = FakeHandle("shape", inputs_schema(shape), shape)
    handle.__wrapped__ = shape  # what the real handle exposes
    f = form(handle)
    f.set(size="large", crop={"left": 3})
    values = f.values()
    assert values["size"] is Size.LARGE
    assert values["crop"] == Crop(left=3, top=0)
    assert values["pair"] == (1, 2)
    f.fields["crop"].control.value = '{"left": "three"}'
    assert f.submit() is None
    assert "left" in f.fields["crop"].error.value
