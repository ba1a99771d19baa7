"""How calls and outcomes cross Ray (backends/_ray_wire.py): small values as our own pickle
bytes, values holding a large buffer left to Ray's serialization (its object store)."""

from __future__ import annotations

import numpy
import pytest

from sieve_jupyter.backends._ray_wire import LARGE_BUFFER, dumps_small, loads


def test_a_small_request_travels_as_bytes_and_comes_back_equal() -> None:
    request = ("job-1", (1, "two", numpy.arange(10)), {"k": [3.0]}, ["job-0"])
    data = dumps_small(request)
    assert type(data) is bytes
    job, args, kwargs, received = loads(data)
    assert (job, args[:2], kwargs, received) == ("job-1", (1, "two"), {"k": [3.0]}, ["job-0"])
    assert numpy.array_equal(args[2], numpy.arange(10))


def test_a_value_with_a_large_buffer_is_left_to_ray() -> None:
    big = numpy.zeros(LARGE_BUFFER + 1, dtype=numpy.uint8)
    assert dumps_small(("job-2", (big,), {}, [])) is None
    # (a buffer of exactly the limit still travels as bytes)
    assert dumps_small(numpy.zeros(LARGE_BUFFER, dtype=numpy.uint8)) is not None
    value = ("left", "to ray")
    assert loads(value) is value  # what Ray rebuilt itself passes through


def test_what_cannot_be_pickled_is_an_error_before_anything_is_sent() -> None:
    with pytest.raises(TypeError):
        dumps_small(
            ("job-3", (lambda: None).__code__.co_consts, {}, [object.__new__(_Unpicklable)])
        )


class _Unpicklable:
    def __reduce__(self) -> object:
        raise TypeError("not this one")
