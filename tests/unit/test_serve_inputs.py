"""How the server reads a prediction's input object before anything runs (`serve/_io.InputPlan`)."""

from __future__ import annotations

import pytest

import sieve_jupyter as sieve
from sieve_jupyter.serve._io import InputError422, InputPlan
from sieve_jupyter.spec import spec_from_callable


def _plan() -> InputPlan:
    def collage(images: list[sieve.Image], cover: sieve.File, title: str = "") -> int:
        return len(images)

    return InputPlan.for_spec(spec_from_callable(collage, kind="function", name="collage"))


def test_sieve_file_objects_become_their_urls_alone_or_in_lists() -> None:
    plan = _plan()
    value = {
        "images": [{"url": "https://example.org/a.png"}, "https://example.org/b.png"],
        "cover": {"url": "data:text/plain;base64,eA=="},
        "title": "t",
    }
    assert plan.check(value) == {
        "images": ["https://example.org/a.png", "https://example.org/b.png"],
        "cover": "data:text/plain;base64,eA==",
        "title": "t",
    }
    assert value["cover"] == {"url": "data:text/plain;base64,eA=="}  # the request is not changed
    plain = {"images": [], "cover": "https://example.org/c.png"}
    assert plan.check(plain) is plain


def test_an_object_that_is_not_a_sieve_file_is_still_refused_by_its_field() -> None:
    plan = _plan()
    for cover in ({"url": 3}, {"url": "https://example.org/c", "size": 1}, {"path": "/x"}):
        with pytest.raises(InputError422) as info:
            plan.check({"images": [], "cover": cover})
        assert info.value.detail[0]["loc"] == ["body", "input", "cover"], cover
