"""Every demo notebook exports to a bundle whose module imports with plain Python, and whose
server answers (the demos' own functions, chaining included)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _servers import ROOT, Server

from sieve_jupyter.bundle import export_notebook, read_bundle

NOTEBOOKS = ROOT / "notebooks"

CALLS = {
    "quickstart": ("multiplier", {"x1": 2, "x2": 3}, 6),
    "chaining": (
        "review-pipeline",
        {"reviews": ["I love it", "slow and bad"]},
        [["I love it", 0.333], ["slow and bad", -0.667]],
    ),
    "batch_frames": (
        "square-finder",
        {"frame": np.full((4, 6, 3), 200).tolist()},
        {"x": 2, "y": 1, "pixels": 24},
    ),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_demo_notebook_bundle_imports_and_serves(name: str, tmp_path: Path) -> None:
    result = export_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path / name)
    bundle = read_bundle(tmp_path / name)
    assert {f.name for f in bundle.functions} == {f.name for f in result.functions}
    check = (
        "import sys; sys.path.insert(0, sys.argv[1]); import main; "
        "assert 'IPython' not in sys.modules, 'IPython was imported'; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", check, str(bundle.src)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    function, value, expected = CALLS[name]
    server = Server(tmp_path / name, "--workers", "2" if name == "chaining" else "1")
    try:
        body = server.predict({"input": value}, f"/functions/{function}/predictions").json()
        assert body["status"] == "succeeded", body
        assert body["output"] == expected
    finally:
        assert server.stop() == 0
