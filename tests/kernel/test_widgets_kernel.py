"""Widgets in a real ipykernel: a form submit runs a job and shows its result, and following
10,000 pushed futures sends a bounded number of comm messages to the frontend."""

from __future__ import annotations

import os
import pathlib
import queue
import re
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

pytestmark = pytest.mark.kernel

REPO = pathlib.Path(__file__).resolve().parents[2]


class Kernel:
    """A started ipykernel plus a client that records every iopub message of each execution."""

    def __init__(self, manager: KernelManager) -> None:
        self.manager = manager
        self.client = manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 240) -> list[dict[str, Any]]:
        """Execute `code`; return all iopub messages seen until the kernel is idle again.

        Messages are not filtered by parent: widgets update from a background thread, and those
        comm messages count whatever request they are attributed to.
        """
        msg_id = self.client.execute(textwrap.dedent(code))
        seen: list[dict[str, Any]] = []
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty as exc:
                raise AssertionError(f"kernel did not finish in {timeout} s: {code}") from exc
            seen.append(msg)
            if (
                msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == msg_id
            ):
                break
        reply = self.client.get_shell_msg(timeout=timeout)
        if reply["content"]["status"] != "ok":
            content = reply["content"]
            trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(content.get("traceback", [])))
            raise AssertionError(
                f"cell failed: {content.get('ename')}: {content.get('evalue')}\n{trace}"
            )
        return seen

    def value(self, expression: str) -> Any:
        """The `repr` of an expression evaluated in the kernel, read back with `eval`."""
        messages = self.run(f"print(repr({expression}))")
        text = "".join(
            m["content"]["text"]
            for m in messages
            if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        )
        return eval(text)  # noqa: S307 - our own repr of plain data

    def close(self) -> None:
        self.client.stop_channels()
        # A shutdown request, as Jupyter's "Shut Down Kernel" sends: the kernel runs its exit
        # handlers, which stop its workers and remove the files uploaded through forms.
        self.manager.shutdown_kernel(now=False)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=env, cwd=str(tmp_path_factory.mktemp("widgets-kernel")))
    session = Kernel(manager)
    try:
        yield session
    finally:
        session.close()


SETUP = """
import concurrent.futures
import time

import sieve_jupyter as sieve
from sieve_jupyter.jupyter.widgets import form, progress


def wait_until(condition, seconds=120):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
"""


def comm_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["msg_type"] == "comm_msg"]


def test_form_submit_runs_a_job_and_shows_the_result(kernel: Kernel) -> None:
    kernel.run(SETUP)
    kernel.run("""
        @sieve.function(name="widget-adder")
        def add(x: int, y: int = 2) -> dict:
            \"\"\"Add two numbers.

            Args:
                x: the first number
            \"\"\"
            print("adding", x, y)
            return {"sum": x + y}

        f = form(add)
    """)
    shown = kernel.run("f")
    views = [
        m
        for m in shown
        if m["msg_type"] in ("display_data", "execute_result")
        and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
    ]
    assert views, "the form did not display as a widget"
    assert kernel.value("list(f.fields)") == ["x", "y"]
    assert kernel.value("list(form('widget-adder').fields)") == ["x", "y"]  # by name
    assert kernel.value("f.fields['y'].control.value") == "2"  # default prefilled
    assert "the first number" in kernel.value("f.fields['x'].help.value")

    kernel.run("f.set(x=40); f.submit_button.click()")
    kernel.run("wait_until(lambda: f.result_widget is not None)")
    assert kernel.value("f.result_widget.outputs[0]['data']['application/json']") == {"sum": 42}
    assert "finished" in kernel.value("f.progress.summary.value")
    assert "adding 40 2" in kernel.value("f.progress.job_detail.value")


def test_invalid_form_input_pushes_nothing(kernel: Kernel) -> None:
    kernel.run(SETUP)
    kernel.run("""
        from typing import Annotated
        from pydantic import Field

        @sieve.function(name="widget-bounded")
        def bounded(n: Annotated[int, Field(ge=1)],
                    label: Annotated[str, Field(min_length=3)]) -> str:
            return label * n

        g = form(bounded)
        g.set(n=0)
        pushed = g.submit()
    """)
    assert kernel.value("pushed") is None
    assert "out of range" in kernel.value("g.fields['n'].error.value")
    assert "required" in kernel.value("g.fields['label'].error.value")
    assert kernel.value("len(g.futures)") == 0


def test_progress_of_10000_futures_sends_bounded_comm_messages(kernel: Kernel) -> None:
    kernel.run(SETUP)
    during = kernel.run("""
        @sieve.function(name="widget-square")
        def square(i: int) -> int:
            time.sleep(0.0003)  # long enough that completions stream in over many redraws
            return i * i

        futures = [square.push(i) for i in range(10_000)]
        w = progress(futures)
        display(w)
    """)
    during += kernel.run("""
        concurrent.futures.wait(futures, timeout=200)
        wait_until(lambda: w.finished)
    """)
    assert kernel.value("w.finished"), kernel.value(
        "(w.ticks, w.state.totals(), repr(__import__('sieve_jupyter.jupyter.widgets._tracker',"
        " fromlist=['x'])._TICKER._clients))"
    )
    assert kernel.value("w.state.totals()['finished']") == 10_000
    assert "10,000/10,000" in kernel.value("w.summary.value")
    ticks = kernel.value("w.ticks")
    sent = len(comm_messages(during))
    print(f"{sent} comm messages over {ticks} redraws for 10,000 futures")
    # one message per tick at most for the summary, a few more for the job list and the end;
    # a widget that redrew per future would send at least 10,000
    assert sent < 1_000
    assert sent <= 3 * ticks + 10


def test_future_displays_live_and_awaits_in_async_cells(kernel: Kernel) -> None:
    kernel.run(SETUP)
    kernel.run("""
        @sieve.function(name="widget-echo")
        def echo(text: str) -> str:
            return text.upper()
    """)
    shown = kernel.run("job = echo.push('hello'); job")
    bundles = [
        m["content"]["data"] for m in shown if m["msg_type"] in ("display_data", "execute_result")
    ]
    assert any("application/vnd.jupyter.widget-view+json" in b for b in bundles)
    assert any("widget-echo" in b.get("text/html", "") for b in bundles)  # saved-notebook view
    kernel.run("""
        from sieve_jupyter import as_completed
        result = await job
        order = [f.result() async for f in as_completed([echo.push(w) for w in ("a", "b")])]
    """)
    assert kernel.value("result") == "HELLO"
    assert sorted(kernel.value("order")) == ["A", "B"]


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def test_uploaded_image_reaches_the_worker_and_the_result_shows_as_an_image(
    kernel: Kernel,
) -> None:
    kernel.run(SETUP)
    kernel.run(f"""
        @sieve.function(name="widget-echo-image")
        def echo_image(picture: sieve.Image) -> bytes:
            with open(picture.path, "rb") as handle:
                return handle.read()

        h = form(echo_image)
        h.set(picture={PNG!r})
        h.submit()
        wait_until(lambda: h.result_widget is not None)
    """)
    assert kernel.value("type(h.result_widget).__name__") == "Image"
    assert kernel.value("bytes(h.result_widget.value)") == PNG
    assert kernel.value("h.fields['picture'].preview.value == bytes(h.result_widget.value)")


def test_saved_notebook_keeps_the_final_progress(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    cells = [
        SETUP,
        "@sieve.function(name='widget-saved')\n"
        "def double(i: int) -> int:\n"
        "    if i == 7:\n"
        "        raise KeyError('seven')\n"
        "    return 2 * i\n",
        "futures = [double.push(i) for i in range(200)]\nw = progress(futures)\nw",
        "wait_until(lambda: w.finished)",
    ]
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    # the kernel nbclient starts inherits this environment
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    client = NotebookClient(
        book, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    saved = tmp_path / "saved.ipynb"
    nbformat.write(book, saved)
    output = nbformat.read(saved, as_version=4).cells[2].outputs[0]
    static = output["data"]["text/html"]
    assert "200/200" in static and "199 finished" in static
    assert "KeyError" in static and "seven" in static  # the error, readable without widgets


def test_model_form_runs_predict_on_the_warm_worker(kernel: Kernel) -> None:
    kernel.run(SETUP)
    kernel.run("""
        import enum

        class Case(enum.Enum):
            UPPER = "upper"
            LOWER = "lower"

        @sieve.Model(name="widget-caser")
        class Caser:
            def __setup__(self):
                self.calls = 0

            def __predict__(self, text: str, case: Case = Case.UPPER) -> str:
                self.calls += 1
                return f"{text.upper() if case is Case.UPPER else text.lower()} #{self.calls}"

        m = form(Caser)
        m.set(text="Hello", case="lower")
        m.submit()
        wait_until(lambda: m.result_widget is not None)
        m.set(text="again", case="upper")
        m.submit()
        wait_until(lambda: len(m.futures) == 2 and m.futures[1].done()
                   and m.result_widget is not None and "#2" in m.result_widget.value)
    """)
    # the dropdown's value arrived as the Enum member, and both calls hit one warm instance
    assert "AGAIN #2" in kernel.value("m.result_widget.value")
    assert kernel.value("m.futures[0].result()") == "hello #1"


def test_sieve_form_magic_opens_the_form_by_name(kernel: Kernel) -> None:
    kernel.run(SETUP)
    kernel.run("""
        %load_ext sieve_jupyter

        @sieve.function(name="widget-greeter")
        def greet(name: str = "world") -> str:
            return f"hello {name}"
    """)
    shown = kernel.run("%sieve form widget-greeter")
    bundles = [m["content"]["data"] for m in shown if m["msg_type"] == "execute_result"]
    assert bundles and "application/vnd.jupyter.widget-view+json" in bundles[0]
    assert bundles[0]["text/plain"] == "sieve form for widget-greeter (name)"


def test_generator_outputs_stream_into_the_form(kernel: Kernel) -> None:
    kernel.run(SETUP)
    kernel.run("""
        @sieve.function(name="widget-counter")
        def count(n: int = 3):
            for i in range(n):
                print(f"step {i}")
                yield {"step": i}

        c = form(count)
        c.submit()
        wait_until(lambda: c.result_widget is not None)
    """)
    assert "step 2" in kernel.value("c.progress.job_detail.value")  # what it printed
    assert kernel.value("c.result_widget.outputs[0]['data']['application/json']") == [
        {"step": 0},
        {"step": 1},
        {"step": 2},
    ]
