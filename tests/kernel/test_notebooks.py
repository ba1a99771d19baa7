"""The demo notebooks run end to end in a real kernel (nbclient), and say what they should."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: a markdown cell with this tag asks the reader to restart the kernel before the cells below
RESTART_TAG = "restart-kernel"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def execute(name: str, tmp_path: Path, log: list[str] | None = None) -> list[str]:
    """Run a notebook; return each code cell's text output (streams and text/plain).

    At a cell tagged `RESTART_TAG` the kernel is restarted, as the notebook asks its reader to.

    `log` collects what nbclient logged at WARNING or above (what `nbconvert --execute`
    prints). Whatever the notebook, the kernel opens no comm of its own (the side panel opens
    it), so nbclient, which has no handler for the panel's target, has nothing to warn about.
    """
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    logger = logging.getLogger(f"nbclient-{name}-{id(tmp_path)}")
    records = _Records()
    logger.addHandler(records)
    logger.propagate = False
    client = NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        log=logger,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        with client.setup_kernel():
            assert client.kc is not None and client.km is not None
            restarted = False
            for index, cell in enumerate(notebook.cells):
                if RESTART_TAG in cell.metadata.get("tags", []):
                    # what the notebook asks its reader to do here: Kernel > Restart Kernel
                    # (nbclient's manager and client are the async ones)
                    run_sync(client.km.restart_kernel)(now=True)
                    run_sync(client.kc.wait_for_ready)(timeout=60)
                    restarted = True
                client.execute_cell(cell, index)
                if restarted and cell.cell_type == "code":
                    # a new kernel process counts its cells from 1 again
                    assert cell.execution_count == 1, cell.execution_count
                    restarted = False
    finally:
        logger.removeHandler(records)
    warnings = [r.getMessage() for r in records.records if r.levelno >= logging.WARNING]
    assert not [line for line in warnings if "comm target" in line], warnings
    if log is not None:
        log.extend(warnings)
    return [_text(cell) for cell in notebook.cells if cell.cell_type == "code"]


def _text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
            parts.append(output["data"].get("text/html", ""))
    return "".join(parts)


def test_every_demo_notebook_is_tested() -> None:
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {
        "quickstart.ipynb",
        "batch_frames.ipynb",
        "chaining.ipynb",
        "deploy.ipynb",
    }


def test_quickstart(tmp_path: Path) -> None:
    log: list[str] = []
    out = execute("quickstart.ipynb", tmp_path, log)
    assert log == []  # nbclient (what nbconvert --execute runs) had nothing to warn about
    # (a slow machine may first show "starting a worker…" while the cold worker starts)
    assert out[1].endswith("6\n6\n")
    assert "[8, 16, 30, 32, 46, 84]" in out[2] and "finished" in out[2]
    assert "setting up!" in out[3] and "3\n42 finished" in out[3]
    assert out[4].endswith("42\n")
    assert "Registered model 'scaler'" in out[6]
    assert "loading the scale factor once" in out[7] and "42.0" in out[7]
    for name in ("multiplier", "adder", "scaler"):
        assert name in out[8]
    assert "scaler-" in out[9] and "finished" in out[9]


def test_batch_frames(tmp_path: Path) -> None:
    out = execute("batch_frames.ipynb", tmp_path)
    assert "48 frames of (120, 160, 3)" in out[0]
    assert "the square moved 138 pixels across 48 frames" in out[3]
    assert "processed by 2 warm workers" in out[4]
    assert "[14, 17, 20, 23, 26, 29, 32, 35]" in out[5]


@pytest.mark.parametrize("name", ["chaining.ipynb"])
def test_chaining(tmp_path: Path, name: str) -> None:
    out = execute(name, tmp_path)
    assert "+0.333  I love how fast and warm the model stays." in out[1]
    assert "-0.500  Cold starts are slow and bad." in out[1]
    assert "review-pipeline" in out[2] and "sentiment" in out[2]


def test_deploy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # (its deployment goes to a registry of this test's own, never the user's)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.delenv("SIEVE_DEPLOYMENTS_DIR", raising=False)
    try:
        out = execute("deploy.ipynb", tmp_path)
    finally:
        _undeploy_all()
    assert out[1].endswith("3\n") or "3" in out[1]
    assert "Exported adder" in out[2] and "taken whole" in out[2]
    assert "Dockerfile" in out[2] and "sieve.yaml" in out[2]
    assert "ready: loading the offset once" in out[3]
    assert '"status":"succeeded"' in out[4] and '"output":5' in out[4]
    assert "3\n42 finished\nInputError: x2:" in out[5]
    assert "server exited with 0" in out[6]
    assert "Deployed " in out[7] and "/adder version 1-" in out[7]
    assert out[8].strip() == "5"  # another process called it by name
    assert out[9].strip() == "5 42"  # after the restart: a new kernel process calls it by name
    assert "/adder" in out[10] and "READY" in out[10]
    assert "Undeployed " in out[11]
    assert (tmp_path / "bundles" / "adder" / "sieve.yaml").exists()


def _undeploy_all() -> list[str]:
    """Undeploy whatever the notebook left deployed (nothing, when it ran to its end)."""
    from sieve_jupyter.deploy import undeploy
    from sieve_jupyter.deploy._registry import LocalRegistry

    left = sorted({f"{e['user']}/{e['name']}" for e in LocalRegistry().entries()})
    for key in left:
        undeploy(key, log=lambda line: None)
    assert left == []
    return left
