"""How calls and outcomes cross Ray (backends/_ray_wire.py): small values as our own pickle
bytes, values holding a large buffer left to Ray's serialization (its object store)."""

from __future__ import annotations

import numpy
import pytest

from sieve_jupyter.backends._ray_wire import LARGE_BUFFER, SideMessageOrder, dumps_small, loads


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


def test_side_messages_that_overtake_an_answer_wait_for_its_tail() -> None:
    # A group of calls: outcomes 1-3 went through the hub, 4 stayed in the group's answer;
    # the next group's first outcome (5) came through the hub before that answer was read.
    order = SideMessageOrder()
    assert order.take([(1, "r1")]) == ["r1"]
    assert order.take([(2, "r2"), (3, "r3")]) == ["r2", "r3"]
    assert order.take([(5, "r5")]) == []  # (held: 4 is still on its way)
    assert (order.delivered, order.received) == (3, 5)
    assert order.take([(4, "r4")], lost_up_to=3) == ["r4", "r5"]  # the answer's tail
    assert (order.delivered, order.received) == (5, 5)
    # what was delivered already (a tail repeating the hub's) is not delivered again
    assert order.take([(4, "r4"), (5, "r5"), (6, "r6")]) == ["r6"]


def test_side_messages_lost_with_the_hub_do_not_hold_back_those_after_them() -> None:
    order = SideMessageOrder()
    assert order.take([(1, "a")]) == ["a"]
    assert order.take([(4, "d"), (6, "f")]) == []  # (2 and 3 went with a hub that died)
    # the job's answer says the hub held up to 3: what has not come by then is lost
    assert order.take([(5, "e")], lost_up_to=3) == ["d", "e", "f"]
    assert order.delivered == 6
