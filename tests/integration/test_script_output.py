"""A plain Python script shows what its workers print, as a notebook shows it under the cell.

Run as real scripts in fresh interpreters: what is under test is the process's own standard
output and error, and which layer (the script's printer or the notebook's router) owns them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
import sieve_jupyter as sieve

@sieve.Model(name="loud")
class Loud:
    def __setup__(self):
        print("loading weights ...")
    def __predict__(self, x: int) -> int:
        print(f"predicting {x}")
        print(f"warning about {x}", file=sys.stderr)
        return x * 10

@sieve.function(name="counter")
def counter(n: int):
    for i in range(n):
        print(f"item {i}")
        yield i

print("result", Loud.run(1), flush=True)
futures = [Loud.push(x) for x in (2, 3)]
print("pushed", [f.result() for f in futures], flush=True)
print("streamed", list(counter.run(2)), flush=True)
"""


def _run(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.py"
    path.write_text(script)
    result = subprocess.run(
        [sys.executable, *args, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_a_script_prints_its_workers_output_once_and_before_the_call_returns(
    tmp_path: Path,
) -> None:
    result = _run(tmp_path, SCRIPT, "-u")
    lines = result.stdout.splitlines()
    # setup and the call's own output come before the line printed once `.run()` returned
    assert lines[:3] == ["loading weights ...", "predicting 1", "result 10"]
    assert sorted(lines[3:5]) == ["predicting 2", "predicting 3"]
    assert lines[5:] == ["pushed [20, 30]", "item 0", "item 1", "streamed [0, 1]"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("warning about")]
    assert sorted(errors) == ["warning about 1", "warning about 2", "warning about 3"]


def test_terminal_ipython_prints_through_the_extension_once(tmp_path: Path) -> None:
    # Without the extension the script's printer shows the output; once `%load_ext` attaches
    # the notebook layer's router, it alone does: no line is printed twice.
    script = (
        SCRIPT.replace("import sys\n", "import sys\nfrom IPython import get_ipython\n", 1)
        + 'get_ipython().run_line_magic("load_ext", "sieve_jupyter")\n'
        + 'print("again", Loud.run(4), flush=True)\n'
    )
    result = _run(tmp_path, script, "-m", "IPython", "--no-banner", "--colors=NoColor")
    out = result.stdout
    for line in ("loading weights ...", "predicting 1", "predicting 4", "item 1"):
        assert out.count(line + "\n") == 1, out
    assert out.index("predicting 4") < out.index("again 40")
