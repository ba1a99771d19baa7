"""A call whose arguments cannot be the declared types fails in the caller, on every backend,
before any job exists; the lax coercions reach the worker as the declared types."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Unique

import sieve_jupyter as sieve
from sieve_jupyter.manager import get_manager


@pytest.fixture
def picture() -> Iterator[Path]:
    """A file the workers can read (containers get this folder mounted at the same path)."""
    root = Path(os.environ.get("SIEVE_TEST_SHARED_DIR", tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix="sieve-args-", dir=root) as folder:
        path = Path(folder) / "street.png"
        path.write_bytes(b"\x89PNG fake")
        yield path


def test_bad_arguments_fail_in_the_caller_and_queue_nothing(
    backend: str, unique: Unique, picture: Path
) -> None:
    @sieve.function(name=unique("blur"), backend=backend)
    def blur(img: sieve.File, k: int = 3) -> str:
        return f"{type(img).__name__}:{os.path.getsize(img.path)}:{k}"

    jobs_before = len(get_manager().jobs())
    with pytest.raises(sieve.InputError, match=r"^img: expected a sieve.File .* got int 123"):
        blur.run(123)
    with pytest.raises(sieve.InputError, match=r"^k: expected int, got str 'three'"):
        blur.push(str(picture), k="three")
    assert len(get_manager().jobs()) == jobs_before  # nothing was queued
    # a path string is a File to the worker (as Sieve takes one)
    assert blur.run(str(picture)) == f"File:{picture.stat().st_size}:3"
    assert blur.push(picture, k=5).result(timeout=60) == f"File:{picture.stat().st_size}:5"


def test_a_model_gets_its_inputs_as_declared(backend: str, unique: Unique, picture: Path) -> None:
    @sieve.Model(name=unique("detector"), backend=backend)
    class Detector:
        def __predict__(self, image: sieve.Image, threshold: float = 0.5) -> list[str]:
            return [type(image).__name__, type(threshold).__name__]

    assert Detector.run(str(picture), 1) == ["Image", "float"]
    assert list(Detector.map([str(picture)])) == [["Image", "float"]]
    with pytest.raises(sieve.InputError, match=r"^threshold: expected float, got str 'high'"):
        Detector.run(str(picture), threshold="high")
