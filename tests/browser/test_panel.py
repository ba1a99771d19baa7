"""The "Sieve" side panel end to end: a real JupyterLab, a real kernel, real workers, Chromium."""

from __future__ import annotations

import os
from pathlib import Path
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

# Where a developer finds the screenshots (set SIEVE_SCREENSHOTS to keep them).
SCREENSHOTS = os.environ.get("SIEVE_SCREENSHOTS")


def _screenshot(notebook: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        notebook.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


def _job_row(panel: Any, job_id: str) -> Any:
    return panel.locator(f'[data-job-id="{job_id}"]')


def test_the_panel_shows_live_functions_and_jobs_and_cancels_and_restarts(
    notebook: Any,
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
    _screenshot(notebook, "panel-running")

    slow_row.get_by_role("button", name="Cancel").click()
    slow_row.and_(panel.locator('[data-status="cancelled"]')).wait_for()
    assert notebook.run("print(slow.cancelled())").strip() == "True"

    worker_before = notebook.run(
        "from sieve_jupyter.manager import get_manager\n"
        "print(get_manager().functions()[0]['workers'][0]['id'])"
    ).strip()
    row.get_by_role("button", name="Restart").click()
    notebook.page.wait_for_function(
        """([name, before]) => {
            const row = document.querySelector(
                `#sieve-jupyter-panel [data-name="${name}"] .jp-SievePanel-workers`);
            return row && row.title && !row.title.includes(before) && row.title.includes('ready');
        }""",
        arg=["sleeper", worker_before],
    )
    assert notebook.run("print(Sleeper.run(0))").strip() == "0"
    _screenshot(notebook, "panel-restarted")


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


def test_the_form_button_shows_the_form_in_the_notebook(notebook: Any) -> None:
    panel = notebook.show_panel(PANEL_ID)
    notebook.run(LOAD)
    notebook.run(MODEL)
    panel.locator('[data-name="sleeper"]').get_by_role("button", name="Form").click()
    cell = notebook.page.locator(".jp-CodeCell", has_text="%sieve form sleeper")
    cell.locator(".jp-OutputArea-output .jupyter-widgets").first.wait_for()
    assert cell.locator(".jp-OutputArea-output[data-mime-type*='error']").count() == 0
    _screenshot(notebook, "panel-form")
