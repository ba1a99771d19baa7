"""The "Sieve" side panel end to end: a real JupyterLab, a real kernel, real workers, Chromium."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PANEL_ID = "sieve-jupyter-panel"
LOAD = "%load_ext sieve_jupyter"


MODEL = """
import time
import sieve_jupyter as sieve

@sieve.Model(name="sleeper")
class Sleeper:
    def __setup__(self):
        self.naps = 0

    def __predict__(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds
"""

Shoot = Callable[[Any, str], None]


def _job_row(panel: Any, job_id: str) -> Any:
    return panel.locator(f'[data-job-id="{job_id}"]')


def test_the_panel_shows_live_functions_and_jobs_and_cancels_and_restarts(
    notebook: Any,
    screenshot: Shoot,
) -> None:
    panel = notebook.show_panel(PANEL_ID)
    message = panel.locator(".jp-SievePanel-message")
    message.get_by_text("has not loaded sieve_jupyter").wait_for()

    notebook.run(LOAD)
    panel.get_by_text("Functions and models").wait_for()

    notebook.run(MODEL)
    row = panel.locator('.jp-SievePanel-functions [data-name="sleeper"]')
    row.wait_for()
    assert row.locator(".jp-SievePanel-kind").inner_text() == "model"
    assert row.locator(".jp-SievePanel-backend").inner_text() == "local"

    quick = notebook.run(
        "quick = [Sleeper.push(0.2) for _ in range(3)]\nprint(' '.join(f.job_id for f in quick))"
    ).split()
    slow = notebook.run("slow = Sleeper.push(600)\nprint(slow.job_id)").strip()

    for job_id in quick:
        _job_row(panel, job_id).and_(panel.locator('[data-status="finished"]')).wait_for()
    slow_row = _job_row(panel, slow)
    slow_row.and_(panel.locator('[data-status="processing"]')).wait_for()
    assert row.locator(".jp-SievePanel-state").inner_text() == "warm"
    # newest first: the slow job was pushed last
    first = panel.locator(".jp-SievePanel-jobs .jp-SievePanel-item").first
    assert first.get_attribute("data-job-id") == slow
    assert slow_row.locator(".jp-SievePanel-jobid").inner_text() == f"#{slow.split('-')[-1]}"
    counts = row.locator(".jp-SievePanel-counts").inner_text()
    assert counts == "1 running · 3 finished", counts
    screenshot(None, "panel-running")

    slow_row.get_by_role("button", name="Cancel").click()
    slow_row.and_(panel.locator('[data-status="cancelled"]')).wait_for()
    assert notebook.run("print(slow.cancelled())").strip() == "True"

    worker_before = notebook.run(
        "from sieve_jupyter.manager import get_manager\n"
        "print(get_manager().functions()[0]['workers'][0]['id'])"
    ).strip()
    row.get_by_role("button", name="Restart").click()
    # visible feedback: the toast JupyterLab shows for the finished restart
    notebook.page.get_by_text("Restarted the workers of sleeper.").wait_for()
    notebook.page.wait_for_function(
        """([name, before]) => {
            const row = document.querySelector(
                `#sieve-jupyter-panel [data-name="${name}"] .jp-SievePanel-workers`);
            return row && row.title && !row.title.includes(before) && row.title.includes('ready');
        }""",
        arg=["sleeper", worker_before],
    )
    assert notebook.run("print(Sleeper.run(0))").strip() == "0.0"  # (an int given for a float)
    screenshot(None, "panel-restarted")


def test_the_panel_follows_a_kernel_restart(notebook: Any) -> None:
    panel = notebook.show_panel(PANEL_ID)
    notebook.run(LOAD)
    notebook.run(MODEL)
    panel.locator('[data-name="sleeper"]').wait_for()

    notebook.restart_kernel()
    panel.get_by_text("has not loaded sieve_jupyter").wait_for()
    assert panel.locator('[data-name="sleeper"]').count() == 0

    notebook.run(LOAD)
    panel.get_by_text("No functions yet").wait_for()


def test_a_kernel_that_only_imports_sieve_jupyter_answers_the_panel(notebook: Any) -> None:
    panel = notebook.show_panel(PANEL_ID)
    panel.get_by_text("has not loaded sieve_jupyter").wait_for()
    notebook.run(MODEL)  # no %load_ext: importing and defining a model is enough
    panel.locator('[data-name="sleeper"]').wait_for()


def test_the_panel_reconnects_after_a_page_reload_and_follows_the_current_notebook(
    notebook: Any,
) -> None:
    panel = notebook.show_panel(PANEL_ID)
    notebook.run(LOAD)
    notebook.run(MODEL)
    job = notebook.run("f = Sleeper.push(0)\nf.result(120)\nprint(f.job_id)").strip()
    first = notebook.path

    notebook.reload()
    panel = notebook.show_panel(PANEL_ID)
    panel.locator('[data-name="sleeper"]').wait_for()
    panel.locator(f'[data-job-id="{job}"][data-status="finished"]').wait_for()

    notebook.new_notebook()
    panel.get_by_text("has not loaded sieve_jupyter").wait_for()
    notebook.activate(first)
    panel.locator('[data-name="sleeper"]').wait_for()


def test_a_job_can_be_cancelled_while_the_notebook_waits_for_it(notebook: Any) -> None:
    panel = notebook.show_panel(PANEL_ID)
    notebook.run(LOAD)
    notebook.run(MODEL)
    notebook.run("slow = Sleeper.push(600)")
    notebook.start("slow.result()")  # the kernel's main thread now blocks on the job
    row = panel.locator('[data-status="processing"]')
    row.get_by_role("button", name="Cancel").click()
    panel.locator('[data-status="cancelled"]').wait_for()
    assert "CancelledError" in notebook.finish(allow_error=True)


def test_a_page_reloaded_during_a_long_cell_catches_up_when_the_cell_ends(notebook: Any) -> None:
    notebook.show_panel(PANEL_ID)
    notebook.run(LOAD)
    notebook.run(MODEL)
    job = notebook.run("slow = Sleeper.push(5)\nprint(slow.job_id)").strip()
    notebook.start("slow.result()")  # the kernel stays busy through the reload

    # A reloaded page gets no kernel info from a busy kernel, so the panel waits for the cell.
    notebook.reload(wait_for_idle=False)
    panel = notebook.show_panel(PANEL_ID)
    panel.locator(f'[data-job-id="{job}"][data-status="finished"]').wait_for()


def test_switching_back_to_a_busy_notebook_connects_and_cancels(notebook: Any) -> None:
    panel = notebook.show_panel(PANEL_ID)
    notebook.run(LOAD)
    notebook.run(MODEL)
    notebook.run("slow = Sleeper.push(600)")
    busy = notebook.path
    notebook.start("slow.result()")
    notebook.new_notebook()
    panel.get_by_text("has not loaded sieve_jupyter").wait_for()

    notebook.activate(busy, wait_for_idle=False)
    row = panel.locator('[data-status="processing"]')
    row.get_by_role("button", name="Cancel").click()
    panel.locator('[data-status="cancelled"]').wait_for()


def test_the_form_button_shows_the_form_in_the_notebook(notebook: Any, screenshot: Shoot) -> None:
    panel = notebook.show_panel(PANEL_ID)
    notebook.run(LOAD)
    notebook.run(MODEL)
    panel.locator('[data-name="sleeper"]').get_by_role("button", name="Form").click()
    cell = notebook.page.locator(".jp-CodeCell", has_text="%sieve form sleeper")
    cell.locator(".jp-OutputArea-output .jupyter-widgets").first.wait_for()
    assert cell.locator(".jp-OutputArea-output[data-mime-type*='error']").count() == 0
    screenshot(None, "panel-form")


ONE_LINE = """(panel) => [...panel.querySelectorAll('.jp-SievePanel-job')].map(row => {
    const parts = [...row.children].filter(el => el.offsetParent !== null)
        .map(el => el.getBoundingClientRect());
    const tops = parts.map(r => r.top + r.height / 2);
    return {
        id: row.dataset.jobId,
        height: row.getBoundingClientRect().height,
        spread: Math.max(...tops) - Math.min(...tops),
        overflow: row.scrollWidth - row.clientWidth,
        panelWidth: panel.getBoundingClientRect().width,
    };
})"""


def test_each_job_takes_one_line_at_the_panel_s_default_width(
    notebook: Any, screenshot: Shoot
) -> None:
    panel = notebook.show_panel(PANEL_ID)
    notebook.run(LOAD)
    notebook.run(MODEL)
    notebook.run(
        "import sieve_jupyter as sieve\n"
        "@sieve.function(name='a-function-with-a-rather-long-name', workers=2)\n"
        "def reporter(i: int) -> int:\n"
        "    sieve.report_progress(0.4, 'frames')\n"
        "    time.sleep(600 if i == 0 else 0)\n"
        "    if i == 2:\n"
        "        raise ValueError('not this one')\n"
        "    return i\n"
        "jobs = [reporter.push(i) for i in range(4)]\n"
        "long = Sleeper.push(600); short = Sleeper.push(0.2); waiting = Sleeper.push(0.1)"
    )
    panel.locator('.jp-SievePanel-job[data-status="error"]').wait_for()
    panel.locator('.jp-SievePanel-job[data-status="queued"]').first.wait_for()
    panel.locator(".jp-SievePanel-progress:visible").first.wait_for()
    rows = notebook.page.evaluate(ONE_LINE, panel.element_handle())
    assert len(rows) >= 6
    assert {round(r["panelWidth"]) for r in rows} == {round(rows[0]["panelWidth"])}
    for row in rows:
        # one line: every visible part of the row sits on the same line, nothing overflows
        assert row["spread"] < 4, row
        assert row["overflow"] <= 0, row
        assert row["height"] < 32, row
    # running jobs come before queued ones, whatever their age
    statuses = panel.locator(".jp-SievePanel-job").evaluate_all(
        "rows => rows.map(r => r.dataset.status)"
    )
    assert statuses.index("queued") > max(i for i, s in enumerate(statuses) if s == "processing")
    error_row = panel.locator('.jp-SievePanel-job[data-status="error"]')
    tooltip = error_row.get_attribute("title") or ""
    assert "Cell In[3], line 7, in reporter" in tooltip and "ValueError: not this one" in tooltip
    screenshot(panel, "panel-jobs")


def test_a_click_during_a_burst_of_deltas_is_not_lost(notebook: Any) -> None:
    panel = notebook.show_panel(PANEL_ID)
    notebook.run(LOAD)
    notebook.run(MODEL)
    slow = notebook.run("slow = Sleeper.push(600)\nprint(slow.job_id)").strip()
    row = panel.locator(f'[data-job-id="{slow}"][data-status="processing"]')
    row.wait_for()
    # A steady stream of new jobs (queued behind the busy worker): a delta every redraw.
    notebook.run(
        "import threading\n"
        "stop = threading.Event()\n"
        "def burst():\n"
        "    while not stop.wait(0.01):\n"
        "        Sleeper.push(0)\n"
        "threading.Thread(target=burst, daemon=True).start()"
    )
    seq = lambda: int(panel.get_attribute("data-seq") or 0)  # noqa: E731
    button = row.get_by_role("button", name="Cancel")
    box = button.bounding_box()
    assert box is not None
    mouse = notebook.page.mouse
    mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    mouse.down()
    pressed_at = seq()
    # hold the button down while the panel applies several deltas
    notebook.page.wait_for_function(
        "([node, seq]) => Number(node.dataset.seq) >= seq + 3",
        arg=[panel.element_handle(), pressed_at],
    )
    mouse.up()
    # The job stops running (it may then fall off the list behind the burst's newer jobs).
    row.wait_for(state="detached")
    assert seq() >= pressed_at + 3
    notebook.run("stop.set()")
    assert notebook.run("print(slow.cancelled())").strip() == "True"
