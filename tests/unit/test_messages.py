"""The worker protocol's vocabulary: one module for both ends, documented as it is."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from sieve_jupyter.runtime import messages
from sieve_jupyter.runtime.messages import (
    CONNECTIONS,
    KERNEL_TO_WORKER,
    MESSAGES,
    WORKER_TO_KERNEL,
    Call,
    Result,
    pack,
    unpack,
)

INTERNALS = Path(__file__).resolve().parents[2] / "docs" / "INTERNALS.md"
_ROW = re.compile(r"^\| `(\w+)\(([^)]*)\)` \| (kernel → worker|worker → kernel) \| ([a-z, ]+) \|")


def _documented() -> dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]]:
    rows = {}
    for line in INTERNALS.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            name, fields, direction, connections = match.groups()
            assert name not in rows, f"{name} is documented twice"
            rows[name] = (
                tuple(f.strip() for f in fields.split(",") if f.strip()),
                direction,
                tuple(c.strip() for c in connections.split(",")),
            )
    return rows


def test_the_internals_table_lists_every_message_with_its_fields_direction_and_connection() -> None:
    documented = _documented()
    assert set(documented) == set(MESSAGES), "INTERNALS.md's message table and messages.py differ"
    for name, cls in MESSAGES.items():
        fields, direction, connections = documented[name]
        assert fields == cls._fields, name
        expected = "kernel → worker" if cls in KERNEL_TO_WORKER else "worker → kernel"
        assert direction == expected, name
        assert connections == CONNECTIONS[cls], name


def test_every_message_is_in_one_direction_and_named_as_its_class() -> None:
    assert not set(KERNEL_TO_WORKER) & set(WORKER_TO_KERNEL)
    assert all(MESSAGES[name].__name__ == name for name in MESSAGES)
    assert set(messages.__all__) >= set(MESSAGES)


@pytest.mark.parametrize(
    "message",
    [
        Call("job-1", (1, "two"), {"three": 3.0}),
        Result("job-1", {"a": [1, 2]}, 1.5, 2.5),
        messages.Shutdown(),
        messages.Log(None, "stdout", "hi\n"),
    ],
)
def test_a_message_travels_as_a_plain_tuple_and_comes_back_as_itself(message: Any) -> None:
    wire = pack(message)
    assert type(wire) is tuple and wire[0] == type(message).__name__
    # nothing but builtins on the wire: the pickle names no class of ours
    assert b"sieve_jupyter" not in pickle.dumps(wire, protocol=5)
    back = unpack(pickle.loads(pickle.dumps(wire, protocol=5)))
    assert type(back) is type(message) and back == message


def test_a_call_packed_without_its_named_tuple_is_the_same_on_the_wire() -> None:
    call = Call("job-1", (1, "two"), {"three": 3.0})
    assert messages.pack_call(*call) == pack(call)
    assert unpack(messages.pack_call(*call)) == call


@pytest.mark.parametrize(
    "wire",
    [("Nope", 1), ("Result", "too", "few"), (), ("Call",), ("Shutdown", "extra"), ["Shutdown"]],
)
def test_a_tuple_that_is_not_a_message_is_refused(wire: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError, match="not a worker-protocol message"):
        unpack(wire)
