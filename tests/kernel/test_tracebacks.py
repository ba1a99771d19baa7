"""A job's error reads like a local one in a real ipykernel: the user's frames named as IPython
names them (``Cell In[N], line L`` or the module's path) with their source, the package's own
frames hidden; the same in ``%sieve logs``."""

from __future__ import annotations

import re
from pathlib import Path

from _kernel import CellResult, KernelSession

RESIZE = """import sieve_jupyter as sieve

@sieve.function(name="tb-resize")
def resize(i: int) -> int:
    x = i * 2
    if i == 3:
        raise ValueError(f"odd input {i}")
    return x
"""

LOOKUP = """@sieve.function(name="tb-lookup")
def lookup(key: str) -> int:
    table = {"a": 1}
    try:
        return table[key]
    except KeyError as exc:
        raise LookupError(f"no entry {key!r}") from exc
"""


def _traceback(result: CellResult) -> str:
    assert result.error is not None, "the cell should have failed"
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(result.error["traceback"]))


def _assert_no_package_frames(text: str) -> None:
    assert "sieve_jupyter/" not in text, text
    assert "concurrent/futures" not in text, text
    assert "RemoteTraceback" not in text, text  # the worker's frames are inline, not repeated


def test_a_remote_error_shows_the_cell_and_source_and_hides_the_package(
    kernel_session: KernelSession,
) -> None:
    kernel_session.ok(RESIZE)  # In[1]
    text = _traceback(kernel_session.run("resize.run(3)"))  # In[2]
    assert "Cell In[2], line 1" in text
    assert "----> 1 resize.run(3)" in text
    assert "Cell In[1], line 7, in resize" in text
    # (the line with its source; IPython 8 shows the lines of a frame dedented, 9 as written)
    assert re.search(r'----> 7 +raise ValueError\(f"odd input \{i\}"\)', text), text
    assert text.rstrip().endswith("ValueError: odd input 3")
    _assert_no_package_frames(text)

    # the same through a future, and an exception of the user's own type
    pushed = _traceback(kernel_session.run("f = resize.push(3)\nf.result()"))
    assert "Cell In[1], line 7, in resize" in pushed and "----> 2 f.result()" in pushed
    _assert_no_package_frames(pushed)

    logs = kernel_session.ok("%load_ext sieve_jupyter\n%sieve logs {f.job_id}").stream()
    assert "Cell In[1], line 7, in resize" in logs
    assert 'raise ValueError(f"odd input {i}")' in logs
    assert "ValueError: odd input 3" in logs
    assert "sieve_jupyter/" not in logs


def test_a_chained_remote_error_shows_both_exceptions(kernel_session: KernelSession) -> None:
    kernel_session.ok(RESIZE)
    kernel_session.ok(LOOKUP)  # In[2]
    text = _traceback(kernel_session.run("lookup.run('b')"))
    assert text.index("KeyError") < text.index("direct cause") < text.index("LookupError")
    assert "Cell In[2], line 5, in lookup" in text and "return table[key]" in text
    assert "Cell In[2], line 7, in lookup" in text
    assert "LookupError: no entry 'b'" in text
    _assert_no_package_frames(text)


def test_module_code_is_named_by_its_path(kernel_session: KernelSession, tmp_path: Path) -> None:
    module = tmp_path / "shapes.py"
    module.write_text(
        "def area(w, h):\n    if w < 0:\n        raise ValueError('negative width')\n"
        "    return w * h\n"
    )
    kernel_session.ok(
        "import sieve_jupyter as sieve\nimport shapes\n"
        "@sieve.function(name='tb-area')\ndef measure(w: int) -> int:\n"
        "    return shapes.area(w, 2)\n"
    )
    text = _traceback(kernel_session.run("measure.run(-1)"))
    assert f"File {module}:3, in area" in text
    assert "raise ValueError('negative width')" in text
    _assert_no_package_frames(text)


def test_a_failing_setup_shows_its_frames(kernel_session: KernelSession) -> None:
    kernel_session.ok(
        "import sieve_jupyter as sieve\n"
        "@sieve.Model(name='tb-broken')\nclass Broken:\n"
        "    def __setup__(self):\n        raise RuntimeError('no weights here')\n"
        "    def __predict__(self, x: int) -> int:\n        return x\n"
    )
    text = _traceback(kernel_session.run("Broken.run(1)"))
    assert "Cell In[1], line 5, in __setup__" in text
    assert "raise RuntimeError('no weights here')" in text
    assert "SetupError" in text
    _assert_no_package_frames(text)


def test_the_package_s_own_errors_show_the_cell_and_hide_the_package(
    kernel_session: KernelSession,
) -> None:
    """A bad argument, an unknown name: the message says what and how; no frame of the
    package that raised it shows, from the first error of a fresh kernel on."""
    first = _traceback(
        kernel_session.run('import sieve_jupyter as sieve\nsieve.function.get("nope")')
    )
    assert '----> 2 sieve.function.get("nope")' in first
    assert "FunctionNotFoundError: function 'nope' is neither registered" in first
    _assert_no_package_frames(first)
    kernel_session.ok(RESIZE)
    text = _traceback(kernel_session.run('resize.run("three")'))
    assert '----> 1 resize.run("three")' in text
    assert text.rstrip().endswith(
        "InputError: i: expected int, got str 'three' (input should be "
        "a valid integer, unable to parse string as an integer). Fix: pass int."
    )
    _assert_no_package_frames(text)
    magic = _traceback(kernel_session.run("%load_ext sieve_jupyter\n%sieve stop no-such"))
    assert "FunctionNotFoundError: function 'no-such' is not registered" in magic
    _assert_no_package_frames(magic)
