"""`sieve.export`, `%sieve export` and `%sieve serve` in a real kernel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from _kernel import KernelSession

CELLS = [
    "import sieve_jupyter as sieve\nimport math",
    "%load_ext sieve_jupyter",
    "OFFSET = 100",
    """%%sieve_model --name adder
class Adder:
    def __setup__(self):
        self.offset = OFFSET
    def __predict__(self, x1: int, x2: int) -> int:
        return math.floor(x1 + x2 + self.offset)""",
    "print(Adder.run(1, 2))",
]


def test_export_from_the_kernel_takes_the_cells_it_needs(
    kernel_session: KernelSession, tmp_path: Path
) -> None:
    for cell in CELLS:
        kernel_session.ok(cell)
    exported = kernel_session.ok("%sieve export adder bundles/adder")
    text = exported.stream()
    assert "Exported adder" in text
    assert "In [5]: left out: runs jobs" in text
    assert "In [2]: left out: uses '%load_ext sieve_jupyter'" in text
    source = (tmp_path / "bundles" / "adder" / "src" / "main.py").read_text()
    assert "OFFSET = 100" in source and "@sieve_jupyter.Model(name='adder')" in source
    again = kernel_session.ok('r = sieve.export(Adder, "bundles/again"); print(r.default)')
    assert again.stream().strip().endswith("adder")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, 'src'); import main; "
            "print(main.Adder(). __predict__(1, 2))",
        ],
        cwd=tmp_path / "bundles" / "adder",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "103", done.stderr
    bad = kernel_session.run("%sieve export")
    assert not bad.ok and "UsageError" in bad.error["ename"]  # type: ignore[index]


def test_serve_a_kernel_function_until_stopped(kernel_session: KernelSession) -> None:
    for cell in CELLS:
        kernel_session.ok(cell)
    started = kernel_session.ok(
        "server = _ = get_ipython().run_line_magic('sieve', "
        "'serve adder --port 0'); print(server.url)"
    )
    lines = started.stream().strip().splitlines()
    url = lines[-1]
    assert url.startswith("http://127.0.0.1:")
    response = httpx.post(f"{url}/predictions", json={"input": {"x1": 1, "x2": 2}}, timeout=60)
    assert response.status_code == 200 and response.json()["output"] == 103
    # the calls it printed run as they are
    curl = next(line for line in lines if line.startswith("curl -s "))
    assert curl.startswith(f"curl -s {url}/predictions -H 'content-type: application/json' -d '")
    body = curl.split(" -d '", 1)[1].rstrip("'")
    assert httpx.post(f"{url}/predictions", content=body, timeout=60).json()["output"] == 102
    python = next(line for line in lines if line.startswith("or from Python: "))
    assert python == f"or from Python: sieve.function.get({url!r}).run(x1=1, x2=1)"
    called = kernel_session.ok(f"print({python.removeprefix('or from Python: ')})")
    assert called.stream().strip() == "102"
    listing = kernel_session.ok("%sieve jobs adder")
    assert listing.text.count("finished") >= 2  # the kernel's own job and the HTTP one
    kernel_session.ok("%sieve serve --stop adder")
    try:
        httpx.post(f"{url}/predictions", json={"input": {"x1": 1, "x2": 2}}, timeout=5)
        raise AssertionError("the server still answers")
    except httpx.TransportError:
        pass


def test_export_to_a_model_yaml_and_load_it_back(
    kernel_session: KernelSession, tmp_path: Path
) -> None:
    for cell in CELLS:
        kernel_session.ok(cell)
    exported = kernel_session.ok("%sieve export adder models/adder --format model.yaml")
    assert "Exported adder as a model.yaml" in exported.stream()
    assert (tmp_path / "models" / "adder" / "src" / "sieve_entrypoints.py").is_file()
    again = kernel_session.ok(
        'r = sieve.export(Adder, "models/again", format="model.yaml"); print(sorted(r.files))'
    )
    assert "'model.yaml', 'src/main.py', 'src/sieve_entrypoints.py'" in again.stream()
    # loading replaces the kernel's own adder with the exported one, which answers the same
    loaded = kernel_session.ok(
        "models = %sieve load models/adder/model.yaml\n"
        'print(models["adder"].run(1, 2), models["adder"].run(x1=1, x2=2))'
    )
    assert loaded.stream().split()[-2:] == ["103", "103"]
    bad = kernel_session.run("%sieve export adder models/x --format yaml")
    assert not bad.ok and "UsageError" in bad.error["ename"]  # type: ignore[index]


def test_what_a_served_call_printed_shows_once_under_the_calling_cell(
    kernel_session: KernelSession,
) -> None:
    # The served job is the kernel's own (its server drives the kernel's manager), but the
    # call is the HTTP client's: what the function printed shows under the cell that made the
    # call, once, as for a local `.run()`.
    kernel_session.ok("import sieve_jupyter as sieve\n%load_ext sieve_jupyter")
    kernel_session.ok(
        '@sieve.function(name="greeter")\n'
        "def greet(name: str) -> str:\n"
        '    print("greeting", name)\n'
        '    return f"hello {name}"'
    )
    kernel_session.ok("server = get_ipython().run_line_magic('sieve', 'serve greeter --port 0')")
    called = kernel_session.ok("print(sieve.function.get(server.url).run('ada'))")
    assert called.stream() == "greeting ada\nhello ada\n"
    # pushed: the output arrives while the cell waits, and goes under that cell
    pushed = kernel_session.ok("f = sieve.function.get(server.url).push('bob')\n_ = f.result(60)")
    assert pushed.stream() == "greeting bob\n"
    assert kernel_session.ok("print(f.stdout)").stream() == "greeting bob\n\n"
    kernel_session.ok("%sieve serve --stop greeter")
