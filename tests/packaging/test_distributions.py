"""The sdist and the wheel hold the whole package, and the wheel works once installed.

What a user gets from ``pip install 'sieve-jupyter[jupyter,docker]'``: every module imports, a
function runs on local workers and in a Docker container, JupyterLab lists the side panel
enabled. The wheel's files are compared with what git tracks, so a file that an ignore pattern
or a packaging setting leaves out (as ``build/`` once left out ``sieve_jupyter/build/``) fails
here, not on a user's machine.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import textwrap
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from _dist import REPO, Built, Installed, tracked_files

from sieve_jupyter.bundle import Cell, export_cells

EXTENSION = "sieve-jupyter"

#: The first test also waits for the session's build and install (half a minute here; several
#: minutes when the side panel must be built or pip's cache is cold): a bound on a hang.
pytestmark = pytest.mark.timeout(900)


def package_modules() -> list[str]:
    """Every module of the package, by git's list of its files."""
    modules = []
    for name in tracked_files("sieve_jupyter"):
        path = PurePosixPath(name)
        if path.suffix == ".py":
            parts = path.with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(modules)


def script_output(installed: Installed, code: str, **kwargs: Any) -> Any:
    """Run `code` with the installed environment's Python; it prints one JSON line last."""
    done = installed.run("python", "-c", textwrap.dedent(code), **kwargs)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_tracked_file_matches_an_ignore_pattern() -> None:
    # The build backend leaves ignored paths out of the distributions, and git leaves new files
    # beside them out of commits: a tracked file that a pattern matches is one of both.
    done = subprocess.run(
        ["git", "ls-files", "--cached", "--ignored", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == [], "anchor these ignore patterns (e.g. /build/)"


def test_the_wheel_holds_the_tracked_package_and_the_built_extension(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    package = {n for n in names if n.startswith("sieve_jupyter/")}
    tracked = set(tracked_files("sieve_jupyter"))
    assert sorted(tracked - package) == [], "tracked files missing from the wheel"
    # Nothing inside the package that git does not track: no generated or stray files.
    assert sorted(package - tracked) == [], "files in the wheel that git does not track"
    # Beside the package, only what the build writes: its metadata, and the prebuilt
    # labextension (built from labextension/, so git tracks its sources, not its output).
    version = built.wheel.name.split("-")[1]
    dist_info = f"sieve_jupyter-{version}.dist-info/"
    shared = f"sieve_jupyter-{version}.data/data/share/jupyter/labextensions/{EXTENSION}/"
    others = names - package
    assert sorted(n for n in others if not n.startswith((dist_info, shared))) == []
    assert {f"{dist_info}{n}" for n in ("METADATA", "WHEEL", "RECORD")} <= others
    extension = {n[len(shared) :] for n in others if n.startswith(shared)}
    assert extension == built.extension_files() | {"install.json"}
    assert "static/style.js" in extension and "package.json" in extension


def test_the_sdist_holds_what_a_wheel_build_from_it_needs(built: Built) -> None:
    # (`built` made the wheel from this sdist: the test above checks what that gave.)
    with tarfile.open(built.sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    needed = set(tracked_files("sieve_jupyter", "labextension", "pyproject.toml", "README.md"))
    assert sorted(needed - names) == [], "tracked files missing from the sdist"
    # the prebuilt extension, so a wheel builds from the sdist without Node
    shipped = {n[len("labextension/dist/") :] for n in names if n.startswith("labextension/dist/")}
    assert built.extension_files() <= shipped


def test_the_wheel_installs_as_a_regular_not_editable_package(installed: Installed) -> None:
    where = script_output(
        installed,
        """
        import importlib.metadata, json, sieve_jupyter
        dist = importlib.metadata.distribution("sieve-jupyter")
        print(json.dumps({"file": sieve_jupyter.__file__,
                          "direct_url": json.loads(dist.read_text("direct_url.json"))}))
    """,
    )
    assert Path(where["file"]) == installed.site_packages / "sieve_jupyter" / "__init__.py"
    assert "archive_info" in where["direct_url"] and "dir_info" not in where["direct_url"]
    assert where["direct_url"]["url"].endswith(".whl")
    # no path file or editable finder pointing back at a checkout
    assert [p.name for p in installed.site_packages.glob("*.pth") if "sieve" in p.name] == []


def test_every_module_imports_from_the_installed_wheel(installed: Installed) -> None:
    modules = package_modules()
    report = script_output(
        installed,
        f"""
        import importlib, json, pkgutil, traceback
        failed = {{}}
        for name in {modules!r}:
            try:
                importlib.import_module(name)
            except BaseException:
                failed[name] = traceback.format_exc()
        import sieve_jupyter
        found = ["sieve_jupyter"] + [m.name for m in pkgutil.walk_packages(
            sieve_jupyter.__path__, "sieve_jupyter.")]
        print(json.dumps({{"failed": failed, "found": sorted(found)}}))
    """,
    )
    assert report["failed"] == {}, "\n".join(report["failed"].values())
    assert report["found"] == modules
    assert "sieve_jupyter.build" in modules  # (the package the first broken wheel lost)


def test_a_function_runs_on_local_workers(installed: Installed) -> None:
    report = script_output(
        installed,
        """
        import json
        import sieve_jupyter as sieve

        @sieve.function(name="packaged-multiplier")
        def multiply(x1: int, x2: int) -> int:
            return x1 * x2

        @sieve.function(name="packaged-runtime")
        def runtime_file() -> str:
            import sieve_jupyter.runtime
            return sieve_jupyter.runtime.__file__

        futures = [multiply.push(2, x) for x in range(5)]
        print(json.dumps({"run": multiply.run(6, 7), "push": [f.result(60) for f in futures],
                          "runtime": runtime_file.run()}))
    """,
    )
    assert report["run"] == 42 and report["push"] == [0, 2, 4, 6, 8]
    assert Path(report["runtime"]).is_relative_to(installed.site_packages)


@pytest.mark.docker
def test_the_docker_backend_prepares_an_image_and_runs_the_installed_package(
    installed: Installed, docker_env: dict[str, str]
) -> None:
    report = script_output(
        installed,
        """
        import json, pathlib
        import sieve_jupyter as sieve

        def python_files(root):
            root = pathlib.Path(root)
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))

        @sieve.function(name="packaged-in-docker", backend="docker")
        def mounted_package() -> list:
            import sieve_jupyter
            return python_files(pathlib.Path(sieve_jupyter.__file__).parent)

        here = python_files(pathlib.Path(sieve.__file__).parent)
        print(json.dumps({"container": mounted_package.run(), "kernel": here}))
    """,
        env={**installed.env, **docker_env},
    )
    # the container ran the installed wheel's package, mounted read-only
    assert report["container"] == report["kernel"]
    assert "build/_context.py" in report["container"]


def test_jupyterlab_lists_the_extension_enabled(installed: Installed) -> None:
    done = installed.run("jupyter", "labextension", "list")
    text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    section = None
    found = []
    for line in text.splitlines():
        if line.startswith("/"):
            section = Path(line.strip())
        elif line.strip().startswith(f"{EXTENSION} "):
            found.append((section, line.split()))
    here = installed.venv / "share" / "jupyter" / "labextensions"
    assert [(where, words[2:4]) for where, words in found] == [(here, ["enabled", "OK"])], text


def test_a_wheel_missing_a_module_says_to_reinstall_not_to_add_an_extra(
    installed: Installed, tmp_path: Path
) -> None:
    # The installed package as the first broken wheel had it: without sieve_jupyter/build/.
    broken = tmp_path / "broken"
    shutil.copytree(
        installed.site_packages / "sieve_jupyter",
        broken / "sieve_jupyter",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.rmtree(broken / "sieve_jupyter" / "build")
    report = script_output(
        installed,
        """
        import json
        import sieve_jupyter as sieve
        from sieve_jupyter.backends import create_backend
        try:
            create_backend("docker")
        except sieve.SieveError as exc:
            print(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
    """,
        env={**installed.env, "PYTHONPATH": str(broken)},
    )
    assert report["type"] == "InstallationError"
    message = report["message"]
    assert "sieve_jupyter.build is part of sieve-jupyter itself" in message
    assert str(broken / "sieve_jupyter") in message
    assert "pip install --force-reinstall --no-deps 'sieve-jupyter==" in message
    assert "sieve-jupyter[docker]" not in message


def test_the_wheel_alone_runs_a_script_on_local_workers(installed_bare: Installed) -> None:
    # `pip install sieve-jupyter` and a plain script: no extra is needed for the core
    report = script_output(
        installed_bare,
        """
        import json, sys
        import sieve_jupyter as sieve

        @sieve.Model(name="bare-adder")
        class Adder:
            def __setup__(self):
                self.offset = 1

            def __predict__(self, x1: int, x2: int) -> int:
                return x1 + x2 + self.offset

        futures = [Adder.push(1, x) for x in range(3)]
        optional = ["IPython", "fastapi", "nbformat", "docker", "ray"]
        print(json.dumps({"run": Adder.run(2, 3), "push": [f.result(60) for f in futures],
                          "imported": [m for m in optional if m in sys.modules]}))
    """,
    )
    assert report == {"run": 6, "push": [2, 3, 4], "imported": []}


@pytest.mark.parametrize(
    ("command", "extra", "needs"),
    [
        (["serve", "BUNDLE"], "serve", "fastapi and uvicorn"),
        (["serve", "model.yaml"], "serve", "fastapi and uvicorn"),
        (["export", "notebook.ipynb"], "export", "nbformat"),
        (["serve", "notebook.ipynb"], "serve", "fastapi and uvicorn"),
        (["deploy", "BUNDLE"], "serve", "fastapi and uvicorn"),
    ],
)
def test_a_command_that_needs_an_extra_names_it_before_doing_anything(
    installed_bare: Installed, command: list[str], extra: str, needs: str, tmp_path: Path
) -> None:
    # a real bundle, as exported on a machine with the extras (never read: the check comes
    # first, as it does for the other files)
    source = textwrap.dedent("""\
        import sieve_jupyter as sieve

        @sieve.function(name="bare-double")
        def double(x: int) -> int:
            return 2 * x
    """)
    export_cells([Cell(1, source)], tmp_path / "BUNDLE")
    (tmp_path / "model.yaml").write_text("")
    (tmp_path / "notebook.ipynb").write_text("")
    deployments = tmp_path / "deployments"
    done = subprocess.run(
        [str(installed_bare.venv / "bin" / "sieve-jupyter"), *command],
        cwd=tmp_path,
        env={**installed_bare.env, "SIEVE_DEPLOYMENTS_DIR": str(deployments)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"needs {needs}, which the '{extra}' extra" in done.stderr
    assert f"Fix: pip install 'sieve-jupyter[{extra}]'" in done.stderr
    assert not deployments.exists()
