"""The kernel announces the panel's comm target without opening a comm: a real ipykernel."""

from __future__ import annotations

from _kernel import KernelSession

from sieve_jupyter.jupyter._channel_protocol import (
    BEACON_DISPLAY_ID,
    BEACON_MIME,
    PROTOCOL_VERSION,
)

DEFINE = """
import sieve_jupyter as sieve

@sieve.function(name="beacon-echo")
def echo(x: int) -> int:
    return x
"""


def test_loading_announces_the_target_on_iopub_and_opens_no_comm(
    kernel_session: KernelSession,
) -> None:
    first = kernel_session.ok("import sieve_jupyter")  # lazy: no manager, nothing to announce
    assert not [m for m in first.messages if m["msg_type"] == "update_display_data"]

    defined = kernel_session.ok(DEFINE)  # the manager starts: the target is registered
    beacons = [
        m
        for m in defined.messages
        if m["msg_type"] == "update_display_data"
        and m["content"]["transient"].get("display_id") == BEACON_DISPLAY_ID
    ]
    assert [m["content"]["data"] for m in beacons] == [
        {BEACON_MIME: {"v": PROTOCOL_VERSION, "type": "hello"}}
    ]
    again = kernel_session.ok("%load_ext sieve_jupyter")  # registered already: no second one
    assert not [m for m in again.messages if m["msg_type"] == "update_display_data"]
    assert not [m for m in kernel_session.log if m["msg_type"].startswith("comm_")]
