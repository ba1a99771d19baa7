"""A project written as Sieve's examples are (a `main.py` beside its own modules and files,
run in Sieve from its folder) exports from that file, and its bundle serves away from it: the
local modules the code imports and the files its import reads go along."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _servers import ROOT, Server

from sieve_jupyter import ExportError
from sieve_jupyter.bundle import export_file

MAIN = """\
import os

import sieve_jupyter as sieve
from helpers.text import shout

HERE = os.path.dirname(os.path.realpath(__file__))
metadata = sieve.Metadata(
    description=open(os.path.join(HERE, "data", "description.txt")).read().strip(),
    readme=open("GREETER.README.md").read(),
)

@sieve.Model(name="greeter", metadata=metadata)
class Greeter:
    def __setup__(self):
        import settings  # (a module imported only when the model runs)

        self.greeting = settings.GREETING

    def __predict__(self, name: str) -> str:
        from formatting import polite  # (only when called)

        return polite(shout(f"{self.greeting}, {name}"))

if __name__ == "__main__":
    print(Greeter.run("you"))
"""

PROJECT = {
    "main.py": MAIN,
    "GREETER.README.md": "# Greeter\n\nSays hello.\n",
    "data/description.txt": "Greets politely\n",
    "helpers/__init__.py": "",
    "helpers/text.py": (
        "from helpers.marks import MARK\n\ndef shout(s):\n    return s.upper() + MARK\n"
    ),
    "helpers/marks.py": "MARK = '!'\n",
    "settings.py": "GREETING = 'hello'\n",
    "formatting.py": "import tones\n\ndef polite(s):\n    return tones.soften(s)\n",
    "tones.py": "def soften(s):\n    return s + ' (please)'\n",
    "notes.txt": "not needed by the code\n",
    "unused.py": "raise RuntimeError('never imported')\n",
}


def _project(folder: Path) -> Path:
    for name, text in PROJECT.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder / "main.py"


def test_a_projects_main_py_exports_with_what_it_needs_and_serves(tmp_path: Path) -> None:
    main = _project(tmp_path / "project")
    result = export_file(main, tmp_path / "bundle")
    sources = {name for name in result.files if name.startswith("src/")}
    assert sources == {
        "src/main.py",
        "src/GREETER.README.md",
        "src/data/description.txt",
        "src/helpers/__init__.py",
        "src/helpers/text.py",
        "src/helpers/marks.py",
        "src/settings.py",
        "src/formatting.py",
        "src/tones.py",
    }
    assert {f"src/{name}" for name in result.local_files} == sources - {"src/main.py"}
    assert "helpers/text.py" in str(result) and "GREETER.README.md" in str(result)
    assert "Says hello." in result.functions[0].spec.metadata.readme
    assert result.functions[0].spec.metadata.description == "Greets politely"
    # the same as from the command line, byte for byte
    done = subprocess.run(
        [sys.executable, "-m", "sieve_jupyter.cli", "export", "main.py", "-o", "../cli"],
        cwd=main.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    on_disk = {
        p.relative_to(tmp_path / "cli").as_posix(): p.read_bytes()
        for p in (tmp_path / "cli").rglob("*")
        if p.is_file()
    }
    assert on_disk == result.files
    shutil.rmtree(main.parent)  # the bundle serves without the project
    server = Server(tmp_path / "bundle")
    try:
        body = server.predict({"input": {"name": "ada"}}).json()
        assert body["status"] == "succeeded", body
        assert body["output"] == "HELLO, ADA! (please)"
    finally:
        assert server.stop() == 0


def test_serving_a_projects_main_py_exports_it_for_the_servers_life(tmp_path: Path) -> None:
    main = _project(tmp_path / "project")
    server = Server(main, "--workers", "1")
    try:
        body = server.predict({"input": {"name": "lin"}}).json()
        assert body["status"] == "succeeded", body
        assert body["output"] == "HELLO, LIN! (please)"
    finally:
        assert server.stop() == 0
    output = server.output
    assert "from its folder (imported, or read by its import): GREETER.README.md" in output
    exported = re.search(r"Exported greeter in (\S+) ", output)
    assert exported is not None, output
    assert not Path(exported.group(1)).exists()  # removed with the server
    assert not list((tmp_path / "project").rglob("sieve.yaml"))  # nothing left in the project


def test_code_for_sieves_own_sdk_says_to_change_the_import(tmp_path: Path) -> None:
    main = tmp_path / "main.py"
    main.write_text(MAIN.replace("import sieve_jupyter as sieve", "import sieve"))
    with pytest.raises(ExportError, match=r"import sieve_jupyter as sieve"):
        export_file(main, None)


@pytest.mark.parametrize("name", ["main.txt", "missing.py"])
def test_export_file_refuses_what_is_not_a_notebook_or_python_file(
    tmp_path: Path, name: str
) -> None:
    if name.endswith(".txt"):
        (tmp_path / name).write_text("")
    with pytest.raises(ExportError, match="Fix:"):
        export_file(tmp_path / name, None)


def test_a_local_module_named_like_the_bundles_module_is_refused(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("VALUE = 1\n")
    notebook_code = tmp_path / "app.py"
    notebook_code.write_text(
        textwrap.dedent("""\
            import sieve_jupyter as sieve
            import main

            @sieve.function(name="value")
            def value() -> int:
                return main.VALUE
        """)
    )
    with pytest.raises(ExportError, match=r"rename main\.py"):
        export_file(notebook_code, None)


@pytest.mark.parametrize(
    ("line", "fix"),
    [
        (
            "import no_such_package_here.sub\nSettings = no_such_package_here.sub",
            "install no_such_package_here where you export",
        ),
        ("class Settings:\n    ratio = 1 / 0", "make the cells it took"),
    ],
)
def test_code_that_does_not_import_here_says_why_and_the_fix(
    tmp_path: Path, line: str, fix: str
) -> None:
    main = tmp_path / "main.py"
    main.write_text(
        f"import sieve_jupyter as sieve\n{line}\n\n"
        "@sieve.function(name='f')\ndef f() -> int:\n    return Settings.ratio\n"
    )
    with pytest.raises(ExportError, match="does not import with plain Python") as raised:
        export_file(main, tmp_path / "bundle")
    assert f"Fix: {fix}" in str(raised.value)
    assert not (tmp_path / "bundle").exists()  # nothing written


def test_files_that_may_hold_secrets_are_never_put_in_a_bundle(tmp_path: Path) -> None:
    # what code commonly reads at import: a dotenv file, a key, a credentials file
    secrets = {
        ".env": "API_TOKEN=s3cr3t-value\n",
        "certs/client.pem": "-----BEGIN PRIVATE KEY-----\n",
        "credentials.json": '{"token": "s3cr3t-value"}\n',
        ".config/settings.txt": "hidden folder\n",
    }
    for name, text in secrets.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    main = tmp_path / "main.py"
    main.write_text(
        "import sieve_jupyter as sieve\n"
        f"CONFIG = [open(name).read() for name in {sorted(secrets)!r}]\n"
        "LABELS = open('labels.txt').read().split()\n\n"
        "@sieve.function(name='labels')\n"
        "def labels() -> list:\n"
        "    return LABELS if CONFIG else []\n"
    )
    result = export_file(main, tmp_path / "bundle")
    assert result.local_files == ("labels.txt",)
    assert result.withheld == tuple(sorted(secrets))
    assert "not taken, as it may hold secrets: .config/settings.txt, .env" in str(result)
    written = b"".join(p.read_bytes() for p in (tmp_path / "bundle").rglob("*") if p.is_file())
    assert b"s3cr3t-value" not in written and b"PRIVATE KEY" not in written
