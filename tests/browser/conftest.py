"""Fixtures for the browser tier: a real JupyterLab server, driven in the system Chromium.

- `lab` (session): a ``jupyter lab`` on 127.0.0.1 with an empty token and throw-away config,
  data, runtime, settings and workspace folders; its notebooks live in ``lab.root``.
- `notebook` (per test): a Playwright page showing a fresh notebook whose kernel is idle, with
  helpers to run a cell and read its output (`Notebook.run`) and to open a side panel.
- `browser_type_launch_args`: pytest-playwright launches ``/usr/bin/chromium`` (or
  ``$SIEVE_CHROMIUM``); Playwright's own browser download is never used.
- `screenshot` (per test): ``screenshot(locator, name)`` saves ``name-light.png`` and
  ``name-dark.png`` (JupyterLab's light and dark themes) into ``screenshots/`` under pytest's
  base temporary folder (or ``$SIEVE_SCREENSHOTS``), for a person to look at.

Every test in this folder is marked ``browser``. In CI (``CI=true``) a missing Chromium,
Playwright or installed labextension fails the tests; elsewhere they skip with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("SIEVE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LABEXTENSION = "sieve-jupyter"
PANEL_ID = "sieve-jupyter-panel"
LAB_START_TIMEOUT = 120.0
KERNEL_TIMEOUT_MS = 120_000


def _labextension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return any(
        (Path(d) / LABEXTENSION / "package.json").is_file() for d in jupyter_path("labextensions")
    )


def _missing_requirement() -> str | None:
    try:
        import playwright  # noqa: F401
        import pytest_playwright  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -e '.[browser]'"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM}: run .ci/browser-setup.sh (apt-get install chromium)"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return "JupyterLab is not installed: pip install -e '.[jupyter]'"
    if not _labextension_installed():
        return (
            f"the {LABEXTENSION} labextension is not installed: pip install the project "
            "without SKIP_JUPYTER_BUILDER (the wheel ships the built extension)"
        )
    return None


@pytest.fixture(scope="session")
def browser_requirements() -> None:
    """Fail (in CI) or skip (elsewhere) when the browser tier cannot run here."""
    reason = _missing_requirement()
    if reason is not None:
        _skip_or_fail(reason)


def _skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser tier cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_type_launch_args(
    browser_requirements: None, browser_type_launch_args: dict[str, Any]
) -> dict[str, Any]:
    """Launch the system Chromium (pytest-playwright has no option for one)."""
    return {
        **browser_type_launch_args,
        "executable_path": shutil.which(CHROMIUM) or CHROMIUM,
        "args": [*browser_type_launch_args.get("args", []), *CHROMIUM_ARGS],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """A screen tall enough that a form with its result fits in one screenshot."""
    return {**browser_context_args, "viewport": {"width": 1280, "height": 1400}}


@pytest.fixture(scope="session")
def base_url() -> None:
    """No base URL: pages are opened by their full address. (This also stands in for
    pytest-playwright's own fallback fixture, which newer pytest releases reject.)"""
    return None


class _WithoutPlaywright:
    """Stands in for pytest-playwright's `page` so the tier skips (or fails in CI) cleanly."""

    @pytest.fixture
    def page(self, browser_requirements: None) -> Any:
        _skip_or_fail("the pytest-playwright plugin is not active: pip install -e '.[browser]'")


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("playwright"):
        config.pluginmanager.register(_WithoutPlaywright(), "sieve-without-playwright")


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str  # ends with "/"
    root: Path  # the server's notebook folder (the kernels' working directory)
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server's log, for failure messages."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_settings(settings_dir: Path) -> None:
    # The news pop-up and update check would cover the bottom-right corner and call out.
    notification = settings_dir / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )


@pytest.fixture(scope="session")
def lab(browser_requirements: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A ``jupyter lab`` server for the whole session, stopped (with its kernels) at the end."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    dirs = {
        name: base / name
        for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")
    }
    for path in (root, *dirs.values()):
        path.mkdir()
    _write_settings(dirs["settings"])
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "PYTHONUNBUFFERED": "1",
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = base / "jupyter-lab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Lab(url=url, root=root, log=log)
    try:
        _wait_until_up(process, server)
        yield server
    finally:
        _stop(process)


def _wait_until_up(process: subprocess.Popen[bytes], server: Lab) -> None:
    deadline = time.monotonic() + LAB_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}api/status", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer within {LAB_START_TIMEOUT}s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # SIGINT twice is JupyterLab's "shut down without asking", which also stops its kernels.
    for sig, wait in ((signal.SIGINT, 0.5), (signal.SIGINT, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # Kernels run in the server's process group; take whatever is left of it along.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


_RUN_CELL = """
async ([code, wait]) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const notebook = panel.content;
  if (notebook.activeCell.model.sharedModel.getSource().trim() !== '') {
    await app.commands.execute('notebook:insert-cell-below');
  }
  const cell = notebook.activeCell;
  cell.model.sharedModel.setSource(code);
  const done = app.commands.execute('notebook:run-cell').then(() => cell.model.outputs.toJSON());
  if (wait) {
    return await done;
  }
  window.__sieveTestRunningCell = done;
  return null;
}
"""


def _output_text(outputs: list[dict[str, Any]]) -> tuple[str, str | None]:
    text: list[str] = []
    error: str | None = None
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            text.append("".join(output.get("text", "")))
        elif kind in ("execute_result", "display_data"):
            plain = output.get("data", {}).get("text/plain", "")
            text.append("".join(plain) if isinstance(plain, list) else str(plain))
        elif kind == "error":
            error = f"{output.get('ename')}: {output.get('evalue')}\n" + "\n".join(
                output.get("traceback", [])
            )
    return "".join(text), error


class Notebook:
    """A Playwright page showing one notebook in the `lab` server."""

    def __init__(self, page: Any, lab: Lab, workspace: str) -> None:
        self.page = page
        self.lab = lab
        #: the JupyterLab workspace (saved layout) of this page alone: a reload restores what
        #: this test opened, never a notebook of an earlier test whose kernel is gone (which
        #: opens a modal "Select Kernel" dialog that takes the focus)
        self.workspace = workspace

    def open_lab(self, where: str) -> None:
        """Load JupyterLab at `where` (relative to the server URL) and wait until it is restored."""
        self.page.goto(f"{self.lab.url}{where}")
        self.page.wait_for_function(
            "() => window.jupyterapp !== undefined", timeout=KERNEL_TIMEOUT_MS
        )
        self.page.evaluate("async () => { await window.jupyterapp.restored; }")

    def new_notebook(self) -> str:
        """Create and show another notebook (python3 kernel); returns its path once idle."""
        path: str = self.page.evaluate(_NEW_NOTEBOOK)
        self._wait_until_current(path)
        self.wait_for_idle_kernel()
        return path

    @property
    def path(self) -> str:
        """The path of the notebook being shown."""
        path: str = self.page.evaluate("() => window.jupyterapp.shell.currentWidget.context.path")
        return path

    def activate(self, path: str, *, wait_for_idle: bool = True) -> None:
        """Bring an open notebook to the front (the panel follows the current notebook)."""
        self.page.evaluate(
            "async (path) => {"
            " await window.jupyterapp.commands.execute('docmanager:open', { path });"
            " }",
            path,
        )
        self._wait_until_current(path)
        self.wait_for_idle_kernel(idle=wait_for_idle)

    def reload(self, *, wait_for_idle: bool = True) -> None:
        """Reload the page on the notebook being shown; its kernel keeps running (and may be
        busy: pass ``wait_for_idle=False`` then)."""
        path = self.path
        self.open_lab(f"lab/workspaces/{self.workspace}")
        # The saved workspace may bring another notebook to the front; ask for this one.
        self.activate(path, wait_for_idle=wait_for_idle)

    def _wait_until_current(self, path: str) -> None:
        try:
            self.page.wait_for_function(
                "(path) => window.jupyterapp.shell.currentWidget?.context?.path === path",
                arg=path,
                timeout=KERNEL_TIMEOUT_MS,
            )
        except Exception as exc:  # (Playwright's TimeoutError): say what the page showed
            shown = self.page.evaluate(_MAIN_AREA)
            raise AssertionError(f"{path} never became the current notebook: {shown}") from exc

    def run(self, code: str, *, allow_error: bool = False) -> str:
        """Run `code` in a new cell, wait for it to finish, and return its text output.

        Raises:
            AssertionError: the cell raised (unless `allow_error`), with the traceback.
        """
        outputs = self.page.evaluate(_RUN_CELL, [code, True])
        return self._text(code, outputs, allow_error)

    def start(self, code: str) -> None:
        """Start running `code` in a new cell and return at once (see `finish`)."""
        self.page.evaluate(_RUN_CELL, [code, False])

    def finish(self, *, allow_error: bool = False) -> str:
        """Wait for the cell `start` began and return its text output, like `run`."""
        outputs = self.page.evaluate("async () => await window.__sieveTestRunningCell")
        return self._text("(started cell)", outputs, allow_error)

    def _text(self, code: str, outputs: list[dict[str, Any]], allow_error: bool) -> str:
        text, error = _output_text(outputs)
        if error is not None and not allow_error:
            raise AssertionError(f"cell failed:\n{code}\n---\n{error}")
        return text if error is None else f"{text}{error}"

    def show_panel(self, panel_id: str) -> Any:
        """Activate a side panel by its widget id and return a locator for it."""
        self.page.evaluate("(id) => window.jupyterapp.shell.activateById(id)", panel_id)
        locator = self.page.locator(f"#{panel_id}")
        locator.wait_for(state="visible")
        return locator

    def restart_kernel(self) -> None:
        """Restart the notebook's kernel (without the confirmation dialog) and wait for idle."""
        self.page.evaluate(
            """async () => {
                const panel = window.jupyterapp.shell.currentWidget;
                await panel.sessionContext.session.kernel.restart();
            }"""
        )
        self.wait_for_idle_kernel()

    def wait_for_idle_kernel(self, *, idle: bool = True) -> None:
        """Wait until the notebook's kernel is connected (and idle, unless ``idle=False``)."""
        self.page.wait_for_function(
            """(idle) => {
                const panel = window.jupyterapp.shell.currentWidget;
                const kernel = panel && panel.sessionContext.session?.kernel;
                return !!kernel && (!idle || kernel.status === 'idle')
                    && kernel.connectionStatus === 'connected';
            }""",
            arg=idle,
            timeout=KERNEL_TIMEOUT_MS,
        )


#: what the page shows, for a failure's message: the main area's notebooks, the focus, a dialog
_MAIN_AREA = """
() => {
  const shell = window.jupyterapp.shell;
  const widgets = [...shell.widgets('main')].map(
    (w) => `${w.id}=${w.context?.path}${w.isVisible ? ' (visible)' : ''}`
  );
  return `current ${shell.currentWidget?.id}=${shell.currentWidget?.context?.path}; ` +
    `main area: ${widgets.join(', ')}; focus in ${document.activeElement?.className}; ` +
    `dialog: ${document.querySelector('.jp-Dialog')?.textContent ?? 'none'}`;
}
"""

_NEW_NOTEBOOK = """
async () => {
  const app = window.jupyterapp;
  const panel = await app.commands.execute('notebook:create-new', { kernelName: 'python3' });
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  return panel.context.path;
}
"""


@pytest.fixture
def notebook(page: Any, lab: Lab) -> Iterator[Notebook]:
    """A fresh notebook (python3 kernel, idle) in a fresh browser context.

    Every kernel the test started is shut down afterwards, so its workers go with it.
    """
    page.set_default_timeout(60_000)
    book = Notebook(page, lab, workspace=f"test-{uuid.uuid4().hex[:12]}")
    book.open_lab(f"lab/workspaces/{book.workspace}?reset")
    book.new_notebook()
    try:
        yield book
    finally:
        page.evaluate(
            "async () => { await window.jupyterapp.serviceManager.sessions.shutdownAll(); }"
        )


THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}


def set_theme(page: Any, theme: str) -> None:
    """Switch JupyterLab's theme and wait until it applies."""
    page.evaluate(
        "async (theme) => {"
        " await window.jupyterapp.commands.execute('apputils:change-theme', { theme }); }",
        theme,
    )
    # (the theme is in place once JupyterLab's splash, shown while it changes, is gone)
    page.wait_for_function(
        "(theme) => document.body.dataset.jpThemeName === theme"
        " && !document.querySelector('#jupyterlab-splash')",
        arg=theme,
    )


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots of a session go (printed at the end of the run)."""
    chosen = os.environ.get("SIEVE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def screenshot(notebook: Notebook, screenshot_dir: Path) -> Iterator[Callable[[Any, str], None]]:
    """``screenshot(locator, name)``: the locator's element (or the page, for None) in the light
    and the dark theme; the theme is light again afterwards."""

    def take(target: Any, name: str) -> None:
        for suffix, theme in THEMES.items():
            set_theme(notebook.page, theme)
            path = screenshot_dir / f"{name}-{suffix}.png"
            if target is None:
                notebook.page.screenshot(path=str(path))
            else:
                target.scroll_into_view_if_needed()
                target.screenshot(path=str(path))
        set_theme(notebook.page, THEMES["light"])

    yield take


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    chosen = os.environ.get("SIEVE_SCREENSHOTS")
    base = getattr(config, "_tmp_path_factory", None)
    folder = (
        Path(chosen)
        if chosen
        else (base.getbasetemp() / "screenshots" if base is not None else None)
    )
    if folder is not None and folder.is_dir() and any(folder.glob("*.png")):
        terminalreporter.write_line(f"browser screenshots: {folder}")
