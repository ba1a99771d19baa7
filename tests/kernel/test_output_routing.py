"""A cell never floods: in a real ipykernel, count the outputs a frontend would show for a cell.

A frontend merges consecutive stream messages of one stream into one output and updates
displays in place; `outputs` applies the same rules to the messages filed under a cell.
"""

from __future__ import annotations

import re
from typing import Any

from _kernel import CellResult, KernelSession

FLOOD = """
import concurrent.futures
import sieve_jupyter as sieve

@sieve.Model(name="flood")
class Resize:
    def __setup__(self):
        print("loading weights")

    def __predict__(self, i: int) -> int:
        print(f"resizing {i}")
        return i
"""

SLOW_SETUP = """
import time
import sieve_jupyter as sieve

@sieve.Model(name="slow-setup")
class Slow:
    def __setup__(self):
        print("loading weights")
        time.sleep(1.5)  # a real start-up takes this long: the cell says so meanwhile
        print("weights loaded")

    def __predict__(self, x: int) -> int:
        print(f"predicting {x}")
        return x
"""


def outputs(result: CellResult) -> list[dict[str, Any]]:
    """The outputs a frontend would show for this cell (streams merged, displays updated)."""
    shown: list[dict[str, Any]] = []
    by_display: dict[str, dict[str, Any]] = {}
    for msg in result.messages:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            if shown and shown[-1]["kind"] == "stream" and shown[-1]["name"] == content["name"]:
                shown[-1]["text"] += content["text"]
            else:
                shown.append({"kind": "stream", "name": content["name"], "text": content["text"]})
        elif kind in ("display_data", "execute_result", "error"):
            item = {"kind": kind, "data": content.get("data", {})}
            shown.append(item)
            display_id = content.get("transient", {}).get("display_id")
            if display_id:
                by_display[display_id] = item
        elif kind == "update_display_data":
            display_id = content.get("transient", {}).get("display_id")
            if display_id in by_display:
                by_display[display_id]["data"] = content["data"]
        elif kind == "clear_output":
            shown.clear()
    return shown


def _texts(shown: list[dict[str, Any]]) -> list[str]:
    return [item.get("text") or item["data"].get("text/plain", "") for item in shown]


def test_a_batch_of_500_on_a_cold_function_stays_a_handful_of_outputs(
    kernel_session: KernelSession,
) -> None:
    kernel_session.ok(FLOOD)
    batch = kernel_session.ok(
        "futures = [Resize.push(i) for i in range(500)]\n"
        "display(sieve.progress(futures))\n"
        "done, _ = concurrent.futures.wait(futures)\n"
        "print(len(done), 'done')"
    )
    shown = outputs(batch)
    texts = _texts(shown)
    assert len(shown) <= 5, texts
    assert sum("starting a worker" in t or "worker ready" in t for t in texts) <= 1, texts
    assert not any("resizing" in t for t in texts), texts  # the jobs' prints are in the widget
    assert any(t.startswith("sieve progress: 500 jobs") for t in texts), texts
    assert texts[-1].endswith("500 done\n")
    printed = kernel_session.ok("print(len([f for f in futures if f.stdout]))").stream()
    assert printed.strip() == "500"  # nothing was lost: each job kept what it printed


def test_a_single_run_prints_live_under_its_cell(kernel_session: KernelSession) -> None:
    kernel_session.ok(FLOOD)
    ran = kernel_session.ok("print(Resize.run(7))")
    assert "resizing 7\n" in ran.stream() and ran.stream().endswith("7\n")


def test_a_real_start_shows_one_notice_with_its_start_up_time_before_the_setup_output(
    kernel_session: KernelSession,
) -> None:
    kernel_session.ok(SLOW_SETUP)
    ran = kernel_session.ok("futures = [Slow.push(i) for i in range(3)]\nprint(Slow.run(9))")
    shown = outputs(ran)
    notices = [t for t in _texts(shown) if "worker" in t and "predicting" not in t]
    assert len(notices) == 1, _texts(shown)
    assert re.fullmatch(r"slow-setup: worker ready after \d+\.\d s", notices[0]), notices
    # the notice comes first, then the setup's output in one piece, never split by it
    assert shown[0]["data"]["text/plain"] == notices[0]
    streams = [item["text"] for item in shown if item["kind"] == "stream"]
    assert "loading weights\nweights loaded\n" in streams[0]


def test_jobs_queued_behind_a_busy_warm_worker_show_no_notice(
    kernel_session: KernelSession,
) -> None:
    kernel_session.ok(FLOOD)
    kernel_session.ok("Resize.run(0)")  # warm now
    queued = kernel_session.ok(
        "futures = [Resize.push(i) for i in range(50)]\n"
        "concurrent.futures.wait(futures)\nprint('ok')"
    )
    assert not [t for t in _texts(outputs(queued)) if "worker" in t]
