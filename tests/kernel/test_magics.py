"""Magics, re-run semantics, output routing and interrupt, in a real ipykernel."""

from __future__ import annotations

import time
from pathlib import Path

from _kernel import KernelSession

MODEL_CELL = """%%sieve_model {options}
import os
class Adder:
    def __setup__(self):
        print("setting up!")
        self.offset = 0
    def __predict__(self, x1: int, x2: int) -> int:
        return x1 + x2 + self.offset
"""


def test_load_ext_twice_and_unload(kernel_session: KernelSession) -> None:
    kernel_session.ok("%load_ext sieve_jupyter")
    kernel_session.ok("%load_ext sieve_jupyter")
    result = kernel_session.ok("%sieve help")
    assert "%sieve ls" in result.stream()
    kernel_session.ok("%unload_ext sieve_jupyter")
    gone = kernel_session.run("%sieve help")
    assert not gone.ok and "UsageError" in gone.error["ename"]  # type: ignore[index]


def test_model_magic_registers_binds_and_runs(kernel_session: KernelSession) -> None:
    kernel_session.ok("%load_ext sieve_jupyter")
    defined = kernel_session.ok(MODEL_CELL.format(options="--name adder --env HOME"))
    assert "Registered model 'adder'" in defined.stream()
    ran = kernel_session.ok("print(Adder.run(1, 2))")
    # __setup__'s print lands in the cell whose call started the worker
    assert "setting up!" in ran.stream()
    assert "3" in ran.stream()
    listing = kernel_session.ok("%sieve ls")
    assert "adder" in listing.text and "warm" in listing.text
    html = kernel_session.ok("Adder")
    assert any("sieve model" in h for h in html.data("text/html"))
    jobs = kernel_session.ok("%sieve jobs")
    assert "adder-" in jobs.text and "finished" in jobs.text


def test_magic_help_lists_every_decorator_option(kernel_session: KernelSession) -> None:
    kernel_session.ok("%load_ext sieve_jupyter")
    result = kernel_session.ok(
        "from IPython import get_ipython\n"
        "print(get_ipython().find_cell_magic('sieve_function').__doc__)"
    )
    for option in (
        "--name",
        "--gpu",
        "--python-version",
        "--python-packages",
        "--system-packages",
        "--cuda-version",
        "--run-command",
        "--env",
        "--title",
        "--restart-on-error",
        "--backend",
        "--workers",
        "--entry",
    ):
        assert option in result.stream(), option


def test_rerun_with_same_setup_swaps_code_without_setup(kernel_session: KernelSession) -> None:
    kernel_session.ok("%load_ext sieve_jupyter")
    cell = """%%sieve_model --name counter
import os
class Counter:
    def __setup__(self):
        self.setup_id = os.urandom(4).hex()
    def __predict__(self) -> str:
        return {version!r} + ":" + self.setup_id
"""
    kernel_session.ok(cell.format(version="v1"))
    first = kernel_session.ok("print(Counter.run())").stream().strip()
    rerun = kernel_session.ok(cell.format(version="v2"))
    assert "the new code now answers calls on 1 warm worker (counter-w1)" in rerun.stream()
    assert "__setup__ kept" in rerun.stream()
    second = kernel_session.ok("print(Counter.run())").stream().strip()
    assert first.startswith("v1:") and second.startswith("v2:")
    assert first.split(":")[1] == second.split(":")[1]  # same warm instance
    changed = cell.replace(
        "self.setup_id = os.urandom(4).hex()", "self.setup_id = 'changed-' + os.urandom(4).hex()"
    )
    replaced = kernel_session.ok(changed.format(version="v3"))
    assert "Replaced" in replaced.stream()
    third = kernel_session.ok("print(Counter.run())").stream().strip()
    assert third.startswith("v3:changed-")
    forced = kernel_session.ok(
        changed.replace("--name counter", "--name counter --fresh-setup").format(version="v4")
    )
    assert "Replaced" in forced.stream()
    fourth = kernel_session.ok("print(Counter.run())").stream().strip()
    assert fourth.split(":")[1] != third.split(":")[1]


def test_a_swap_that_fails_in_the_worker_shows_why_and_changes_nothing(
    kernel_session: KernelSession, tmp_path: Path
) -> None:
    kernel_session.ok("%load_ext sieve_jupyter")
    cell = """%%sieve_model --name swapper
import os
class Swapper:
    def __setup__(self):
        self.setup_id = os.urandom(4).hex()
    def __predict__(self) -> str:
        return {body} + ":" + self.setup_id
"""
    kernel_session.ok(cell.format(body="'v1'"))
    first = kernel_session.ok("print(Swapper.run())").stream().strip()
    # A module only the kernel has (its worker started before the path was added).
    folder = tmp_path / "kernel-only"
    folder.mkdir()
    (folder / "only_in_the_kernel.py").write_text("VALUE = 'v2'\n")
    kernel_session.ok(f"import sys; sys.path.insert(0, {str(folder)!r})\nimport only_in_the_kernel")
    failed = kernel_session.run(cell.format(body="only_in_the_kernel.VALUE"))
    assert not failed.ok and failed.error["ename"] == "SwapError"  # type: ignore[index]
    shown = "\n".join(failed.error["traceback"])  # type: ignore[index]
    assert "failed to load in worker swapper-w1" in shown
    assert "No module named 'only_in_the_kernel'" in shown
    assert "the previous code still answers calls on worker swapper-w1" in shown
    # The name still means the previous code, and so does the warm worker.
    assert kernel_session.ok("print(Swapper.run())").stream().strip() == first


def test_bad_option_and_ambiguous_cell_register_nothing(kernel_session: KernelSession) -> None:
    kernel_session.ok("%load_ext sieve_jupyter")
    bad = kernel_session.run("%%sieve_function --workers many\ndef f(x: int) -> int:\n    return x")
    assert not bad.ok and bad.error["ename"] == "UsageError"  # type: ignore[index]
    assert "--workers" in bad.error["evalue"]  # type: ignore[index]
    ambiguous = kernel_session.run(
        "%%sieve_function\ndef a(x: int) -> int:\n    return x\ndef b(x: int) -> int:\n    return x"
    )
    assert not ambiguous.ok
    assert "a, b" in ambiguous.error["evalue"] and "--entry" in ambiguous.error["evalue"]  # type: ignore[index]
    bad_spec = kernel_session.run(
        "%%sieve_function --gpu T4:split=9\ndef c(x: int) -> int:\n    return x"
    )
    assert not bad_spec.ok and "split" in bad_spec.error["evalue"]  # type: ignore[index]
    listing = kernel_session.ok("%sieve ls")
    assert "No functions registered" in listing.text
    unbound = kernel_session.ok("print('c' in globals(), 'a' in globals())")
    assert unbound.stream().strip() == "False False"
    picked = kernel_session.ok(
        "%%sieve_function --entry b\ndef a(x: int) -> int:\n    return x\n"
        "def b(x: int) -> int:\n    return x * 2"
    )
    assert "'b'" in picked.stream()
    assert kernel_session.ok("print(b.run(4), a(4))").stream().strip() == "8 4"


def test_pushed_output_stays_in_its_own_cell(kernel_session: KernelSession, tmp_path: Path) -> None:
    kernel_session.ok("%load_ext sieve_jupyter")
    kernel_session.ok(
        "import time\n"
        "import sieve_jupyter as sieve\n"
        "@sieve.function(name='slow-talker')\n"
        "def talk(delay: float) -> str:\n"
        "    time.sleep(delay)\n"
        "    if delay:\n"
        "        print('late output from the worker')\n"
        "    return 'done'\n"
        "talk.run(0)"
    )
    first = kernel_session.submit("future = talk.push(2.0)")
    first_result = kernel_session.collect(first)
    assert first_result.ok
    second = kernel_session.run("time.sleep(5); print('second cell')")
    assert second.ok and "second cell" in second.stream()
    assert "late output" not in second.stream()
    late = [
        m
        for m in kernel_session.log
        if m["msg_type"] == "stream" and "late output" in m["content"]["text"]
    ]
    assert late, "the worker's output was routed somewhere"
    assert all(m["parent_header"]["msg_id"] == first for m in late)


def test_interrupt_cancels_the_run_and_keeps_warm_state(
    kernel_session: KernelSession, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    kernel_session.ok("%load_ext sieve_jupyter")
    kernel_session.ok(
        "import os, time\n"
        "import sieve_jupyter as sieve\n"
        "@sieve.Model(name='sleepy')\n"
        "class Sleepy:\n"
        "    def __setup__(self):\n"
        "        self.setup_id = os.urandom(4).hex()\n"
        "    def __predict__(self, seconds: float, marker: str = '') -> str:\n"
        "        if marker:\n"
        "            open(marker, 'w').close()\n"
        "        time.sleep(seconds)\n"
        "        return self.setup_id\n"
        "print(Sleepy.run(0))"
    )
    setup_id = kernel_session.ok("print(Sleepy.run(0))").stream().strip()
    msg_id = kernel_session.submit(f"Sleepy.run(60, {str(marker)!r})")
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.05)
    interrupted_at = time.monotonic()
    kernel_session.manager.interrupt_kernel()
    result = kernel_session.collect(msg_id, timeout=30)
    assert time.monotonic() - interrupted_at < 30
    assert not result.ok and result.error["ename"] == "KeyboardInterrupt"  # type: ignore[index]
    after = kernel_session.ok("print(Sleepy.run(0))").stream().strip()
    assert after == setup_id  # no new __setup__
    status = kernel_session.ok("%sieve jobs -n 3")
    assert "cancelled" in status.text


def test_sieve_line_magic_commands(kernel_session: KernelSession) -> None:
    kernel_session.ok("%load_ext sieve_jupyter")
    kernel_session.ok(MODEL_CELL.format(options="--name adder"))
    kernel_session.ok("f = Adder.push(2, 2); f.result()")
    logs = kernel_session.ok("%sieve logs {f}".replace("{f}", "adder-1"))
    assert "setting up!" in logs.stream()
    kernel_session.ok("%sieve restart adder")
    after_restart = kernel_session.ok("print(Adder.run(2, 1))").stream()
    assert after_restart == "setting up!\n3\n"  # one fresh __setup__, output shown once
    kernel_session.ok("%sieve stop adder")
    assert "stopped" in kernel_session.ok("%sieve ls").text
    kernel_session.ok("%sieve config workers=2")
    assert "2" in kernel_session.ok("import sieve_jupyter as s; print(s.config.workers)").stream()
    bad = kernel_session.run("%sieve config workers=zero")
    assert not bad.ok and "workers" in bad.error["evalue"]  # type: ignore[index]
    unknown = kernel_session.run("%sieve frobnicate")
    assert not unknown.ok and "unknown command" in unknown.error["evalue"]  # type: ignore[index]


def test_long_setup_shows_elapsed_time(kernel_session: KernelSession) -> None:
    kernel_session.ok(
        "import time\n"
        "import sieve_jupyter as sieve\n"
        "@sieve.Model(name='slow-setup')\n"
        "class SlowSetup:\n"
        "    def __setup__(self):\n"
        "        time.sleep(3)\n"
        "    def __predict__(self) -> str:\n"
        "        return 'ready'"
    )
    result = kernel_session.ok("print(SlowSetup.run())")
    # the final "ready" update may trail the cell's reply by a moment
    kernel_session.drain(until=time.monotonic() + 2)
    shown = [
        m["content"]["data"]["text/plain"]
        for m in kernel_session.messages_for(result.msg_id)
        if m["msg_type"] in ("display_data", "update_display_data")
    ]
    assert any("starting a worker and running its setup" in text for text in shown)
    assert any("worker ready after" in text for text in shown)
    assert result.stream().strip() == "ready"
