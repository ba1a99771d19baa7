"""The extension in terminal IPython (no kernel): magics work and worker output is printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = '''
get_ipython().run_line_magic("load_ext", "sieve_jupyter")
get_ipython().run_line_magic("load_ext", "sieve_jupyter")
get_ipython().run_cell_magic("sieve_model", "--name adder", """
class Adder:
    def __setup__(self):
        print("setting up!")
        self.offset = 1
    def __predict__(self, x1: int, x2: int) -> int:
        return x1 + x2 + self.offset
""")
print("result", Adder.run(1, 2))
print(get_ipython().run_line_magic("sieve", "ls"))
print(Adder)
get_ipython().run_line_magic("unload_ext", "sieve_jupyter")
'''


def test_magics_in_terminal_ipython(tmp_path: Path) -> None:
    script = tmp_path / "session.ipy"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Registered model 'adder'" in out
    assert "setting up!" in out and "result 4" in out
    assert "adder  model  local" in out
    assert "<sieve model adder(x1: int, x2: int) -> int backend=local state=warm" in out
