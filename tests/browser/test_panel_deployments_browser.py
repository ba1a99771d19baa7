"""The panel's Deployments section end to end: a real JupyterLab in Chromium, a deployment made
from the notebook, its row with health, and Undeploy (confirmed in JupyterLab's dialog)
removing all of it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import processes_under

from sieve_jupyter._errors import SieveWarning

PANEL_ID = "sieve-jupyter-panel"

MODEL = """
import sieve_jupyter as sieve
sieve.configure(user="alice")

@sieve.Model(name="adder")
class Adder:
    def __setup__(self):
        self.offset = 100

    def __predict__(self, x1: int, x2: int) -> int:
        return x1 + x2 + self.offset
"""

Shoot = Callable[[Any, str], None]


@pytest.fixture
def lab_deployments(lab: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The lab's Jupyter data directory, where its kernels' deployments are registered; the
    test must leave no deployment there (anything left is undeployed, and fails the test)."""
    data = lab.root.parent / "data"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data))
    monkeypatch.delenv("SIEVE_DEPLOYMENTS_DIR", raising=False)
    yield data
    from sieve_jupyter.deploy import undeploy
    from sieve_jupyter.deploy._registry import LocalRegistry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SieveWarning)
        left = LocalRegistry().entries()
    for key in sorted({f"{e['user']}/{e['name']}" for e in left}):
        undeploy(key, log=lambda line: None)
    assert left == [], f"registry entries left: {left}"
    assert processes_under(data) == []


def test_a_deployment_shows_with_its_health_and_undeploys_from_the_panel(
    notebook: Any, lab_deployments: Path, screenshot: Shoot
) -> None:
    panel = notebook.show_panel(PANEL_ID)
    notebook.run(MODEL)
    panel.get_by_text("No deployments").wait_for()

    deployed = notebook.run("print(Adder.deploy())")
    assert "Deployed alice/adder version 1-" in deployed
    row = panel.locator('.jp-SievePanel-deployments [data-name="alice/adder"]')
    row.and_(panel.locator('[data-health="READY"]')).wait_for()
    assert row.locator(".jp-SievePanel-version").inner_text().startswith("1-")
    assert row.locator(".jp-SievePanel-backend").inner_text() == "local"
    assert row.locator(".jp-SievePanel-workers").inner_text() == "1/1 ready"
    assert row.locator(".jp-SievePanel-address").inner_text().startswith("http://127.0.0.1:")
    assert row.locator(".jp-SievePanel-uptime").inner_text().startswith("up ")
    assert panel.locator(".jp-SievePanel-deployments .jp-SievePanel-item").count() == 1
    screenshot(panel, "panel-deployments")

    row.get_by_role("button", name="Undeploy").click()
    dialog = notebook.page.locator(".jp-Dialog")
    dialog.get_by_text("Undeploy alice/adder?").wait_for()
    dialog.get_by_role("button", name="Undeploy").click()
    panel.get_by_text("No deployments").wait_for()
    assert row.count() == 0

    from sieve_jupyter.deploy._registry import LocalRegistry

    assert LocalRegistry().entries() == []
    assert processes_under(lab_deployments) == []
    assert notebook.run("print(len(sieve.deployments()))").strip() == "0"


def test_cancelling_the_confirmation_keeps_the_deployment(
    notebook: Any, lab_deployments: Path
) -> None:
    panel = notebook.show_panel(PANEL_ID)
    notebook.run(MODEL)
    notebook.run("print(Adder.deploy())")
    row = panel.locator('.jp-SievePanel-deployments [data-name="alice/adder"]')
    row.and_(panel.locator('[data-health="READY"]')).wait_for()

    row.get_by_role("button", name="Undeploy").click()
    dialog = notebook.page.locator(".jp-Dialog")
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached")
    # the deployment still answers by name
    assert notebook.run("print(sieve.function.get('alice/adder').run(1, 2))").strip() == "103"
    assert row.count() == 1
    notebook.run("sieve.undeploy('alice/adder')")
    panel.get_by_text("No deployments").wait_for()
