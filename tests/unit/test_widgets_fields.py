"""Form fields from the real input schema: widget choice, defaults, help text and validation."""

from __future__ import annotations

import enum
import pathlib
from typing import Annotated, Any, Literal, Optional

import ipywidgets as widgets
import pytest
from pydantic import Field as PydanticField

import sieve_jupyter as sieve
from sieve_jupyter.jupyter.widgets._field_base import message_of
from sieve_jupyter.jupyter.widgets._fields import OMIT, Field, make_field
from sieve_jupyter.jupyter.widgets._schema import FormInputError
from sieve_jupyter.spec._schema import inputs_schema

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Opaque:
    """A type the form cannot edit."""


def example(
    n: int,
    ratio: Annotated[float, PydanticField(ge=0, le=1)] = 0.5,
    k: Annotated[int, PydanticField(gt=0, lt=10)] = 3,
    level: Literal[1, 2, 3, 4] = 2,
    color: Color = Color.GREEN,
    maybe: Optional[int] = None,  # noqa: UP045 - the spelling users write
    tags: list[str] = [],  # noqa: B006
    prompt: str = "hi",
    name: Annotated[str, PydanticField(min_length=2)] = "ab",
    flag: bool = True,
    doc: sieve.File | None = None,
    photo: sieve.Image | None = None,
    where: pathlib.Path | None = None,
    blob: bytes | None = None,
    thing: Opaque | None = None,
) -> None:
    """Example.

    Args:
        n: how many times
        ratio: share of the work
    """


SCHEMA = inputs_schema(example)


def field(name: str) -> Field:
    return make_field(
        name, SCHEMA["properties"][name], SCHEMA, required=name in SCHEMA.get("required", [])
    )


def test_bounded_numbers_are_sliders_and_unbounded_are_boxes() -> None:
    assert isinstance(field("ratio").control, widgets.FloatSlider)
    assert (field("ratio").control.min, field("ratio").control.max) == (0, 1)
    k = field("k").control
    assert isinstance(k, widgets.IntSlider)
    assert (k.min, k.max) == (1, 9)  # exclusive bounds 0 < k < 10
    n = field("n")
    assert isinstance(n.control, widgets.Text) and n.control.value == ""
    with pytest.raises(FormInputError) as info:
        n.value()  # a required number starts empty, not as a silent 0
    assert message_of(info.value) == "n is required: enter a whole number"
    n.control.value = "12"
    assert n.value() == 12
    n.control.value = "1.5"
    with pytest.raises(FormInputError, match="'1.5' is not a whole number"):
        n.value()
    n.control.value = "ten"
    with pytest.raises(FormInputError) as info:
        n.value()
    assert message_of(info.value) == "'ten' is not a whole number"


def test_number_boxes_have_step_buttons() -> None:
    n = field("n")
    minus, plus = n.steps
    plus.click()  # from empty: from 0
    assert n.control.value == "1"
    n.control.value = "41"
    plus.click()
    assert n.value() == 42
    minus.click()
    minus.click()
    assert n.value() == 40
    bounded = make_field("b", {"type": "number", "minimum": 0}, {}, required=True)
    bounded.steps[0].click()
    assert bounded.value() == 0  # never below its bound


def test_literal_range_is_a_slider_and_enum_a_dropdown() -> None:
    level = field("level").control
    assert isinstance(level, widgets.SelectionSlider)
    assert [label for label, _ in level.options] == ["1", "2", "3", "4"]
    assert level.value == 2
    color = field("color").control
    assert isinstance(color, widgets.Dropdown)
    assert color.value == "green"
    assert field("color").value() == "green"


def test_defaults_prefilled_required_marked_docstring_as_help() -> None:
    n = field("n")
    assert n.required and "*" in n.label.value
    assert "how many times" in n.help.value
    assert field("ratio").control.value == 0.5
    assert "share of the work" in field("ratio").help.value
    assert "*" not in field("ratio").label.value
    assert field("flag").control.value is True
    assert field("prompt").control.value == "hi"


def test_required_number_left_empty_is_not_possible_but_text_is_flagged() -> None:
    def f(title: str) -> None:
        pass

    schema = inputs_schema(f)
    title = make_field("title", schema["properties"]["title"], schema, required=True)
    with pytest.raises(FormInputError) as info:
        title.value()
    assert info.value.field == "title" and "required" in str(info.value)


def test_optional_can_be_left_empty() -> None:
    maybe = field("maybe")
    assert maybe.value() is None  # an empty box
    maybe.set(7)
    assert maybe.value() == 7
    maybe.set(None)
    assert maybe.value() is None
    # a slider cannot be empty: it gets a "None" box instead
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "s": {
                "anyOf": [{"type": "integer", "minimum": 0, "maximum": 5}, {"type": "null"}],
                "default": None,
            }
        },
    }
    slider = make_field("s", schema["properties"]["s"], schema, required=False)
    assert slider.unset_box is not None and slider.unset_box.value is True
    assert slider.control.disabled and slider.value() is None
    slider.set(3)
    assert slider.unset_box.value is False and slider.value() == 3


def test_prose_parameters_get_a_multiline_box() -> None:
    assert isinstance(field("prompt").control, widgets.Textarea)
    assert isinstance(field("name").control, widgets.Text)
    assert not isinstance(field("name").control, widgets.Textarea)


def test_constraint_violation_names_field_and_fix() -> None:
    name = field("name")
    name.set("a")
    with pytest.raises(FormInputError) as info:
        name.value()
    assert info.value.field == "name"
    assert message_of(info.value) == "name is 1 character long; needs at least 2"


def test_json_entry_is_parsed_and_validated() -> None:
    tags = field("tags")
    assert tags.control.value == "[]"
    tags.set(["a", "b"])
    assert tags.value() == ["a", "b"]
    tags.control.value = "[1, "
    with pytest.raises(FormInputError, match="not valid JSON"):
        tags.value()
    tags.control.value = '["ok", 2]'
    with pytest.raises(FormInputError) as info:
        tags.value()
    assert "[1]" in info.value.problem and "expected string" in info.value.problem


def test_file_upload_becomes_a_sieve_file(tmp_path: pathlib.Path) -> None:
    doc = field("doc")
    assert isinstance(doc.control, widgets.FileUpload)
    assert doc.value() is None  # Optional, nothing uploaded
    doc.set(b"hello")
    assert doc.file_name.value == "upload · 5 bytes"  # what was uploaded, shown beside it
    value = doc.value()
    assert type(value) is sieve.File
    assert pathlib.Path(value.path).read_bytes() == b"hello"
    # a path typed in works too, and a missing one is reported
    target = tmp_path / "data.txt"
    target.write_text("x")
    other = field("doc")
    other.set(str(target))
    assert other.value() == sieve.File(str(target))
    other.set(str(tmp_path / "missing.txt"))
    with pytest.raises(FormInputError) as info:
        other.value()
    assert message_of(info.value) == (
        f"doc: there is no file at {str(tmp_path / 'missing.txt')!r}: "
        "upload a file or enter an existing path or URL"
    )


def test_a_required_file_says_how_to_give_one() -> None:
    def detect(image: sieve.Image) -> None:
        pass

    schema = inputs_schema(detect)
    image = make_field("image", schema["properties"]["image"], schema, required=True)
    assert not image.recheck()
    assert image.error.value == "image is required: upload a file or enter a path or URL"
    image.set(PNG)  # fixed: the error goes at once
    assert not image.showing_error and image.error.value == ""


def test_an_error_follows_edits_and_goes_once_the_field_is_fixed() -> None:
    n = field("n")
    n.control.value = "ten"
    assert not n.recheck() and n.error.value == "'ten' is not a whole number"
    n.control.value = "1.5"  # still wrong: the message follows
    assert n.error.value == "'1.5' is not a whole number"
    n.control.value = "3"
    assert not n.showing_error


def test_image_upload_previews_and_passes_an_image() -> None:
    photo = field("photo")
    assert photo.upload.accept == "image/*"
    assert photo.preview.layout.display == "none"
    photo.set(PNG)
    assert photo.preview.value == PNG
    assert photo.preview.layout.display != "none"
    assert type(photo.value()) is sieve.Image


def test_path_and_bytes_parameters(tmp_path: pathlib.Path) -> None:
    where = field("where")
    where.set(b"abc")
    assert isinstance(where.value(), pathlib.Path)
    assert where.value().read_bytes() == b"abc"
    blob = field("blob")
    blob.set(b"\x00\x01")
    assert blob.value() == b"\x00\x01"


def test_unknown_python_type_takes_an_expression() -> None:
    thing = field("thing")
    assert thing.value() is None
    thing.set("[1, 2][0]")
    assert thing.value() == 1
    thing.set("undefined_name")
    with pytest.raises(FormInputError, match="NameError"):
        thing.value()


def test_not_required_without_default_is_omitted() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"x": {"type": "integer"}}}
    x = make_field("x", schema["properties"]["x"], schema, required=False)
    assert x.value() is OMIT
