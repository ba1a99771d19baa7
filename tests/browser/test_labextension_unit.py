"""Run the labextension's own TypeScript unit tests (the panel model) as part of this tier.

They need the extension's Node packages, which installing the project from source puts in
``labextension/node_modules`` (the JS build runs ``jlpm install``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

LABEXTENSION = Path(__file__).parents[2] / "labextension"


def test_the_panel_model_unit_tests_pass() -> None:
    jlpm = shutil.which("jlpm")
    missing = None
    if jlpm is None:
        missing = "jlpm is not on PATH (it comes with JupyterLab)"
    elif not (LABEXTENSION / "node_modules" / "typescript").is_dir():
        missing = "labextension/node_modules is missing: run `jlpm install` in labextension/"
    if missing is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    assert jlpm is not None
    result = subprocess.run(
        [jlpm, "test"], cwd=LABEXTENSION, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"jlpm test failed:\n{result.stdout}\n{result.stderr}"
    assert "# fail 0" in result.stdout
