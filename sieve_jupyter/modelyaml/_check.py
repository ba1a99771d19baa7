"""``check``: validate a model.yaml (and optionally run its load once) without registering it.

With ``runtime=True`` each model's ``__setup__`` (import the entrypoints, call load) runs in a
fresh Python process of this environment, working in the code's directory as a worker does, so
the kernel or CLI never imports the model's code itself.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sieve_jupyter.modelyaml._adapter import model_class
from sieve_jupyter.modelyaml._resolve import ResolvedModel
from sieve_jupyter.runtime._pickling import dumps

__all__ = ["CheckedModel", "describe", "report", "run_load"]

_SETUP = """\
import sys, time
import cloudpickle
cls = cloudpickle.loads(sys.stdin.buffer.read())
started = time.perf_counter()
cls().__setup__()
print(f"sieve-check: load took {time.perf_counter() - started:.3f} s", flush=True)
"""


@dataclass
class CheckedModel:
    """What `check` found out about one model.

    Attributes:
        name, source: the model and where its entry is (``model.yaml:3``).
        signature: how it is called, e.g. ``(datapoints: list[int])``.
        root, commit, files: where its code and files are.
        load_seconds: how long load took (``runtime=True`` only).
        load_error: the load's traceback when it failed (``runtime=True`` only).
    """

    name: str
    source: str
    signature: str
    root: Path
    commit: str | None
    files: dict[str, str] = field(default_factory=dict)
    load_seconds: float | None = None
    load_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.load_error is None


def describe(model: ResolvedModel) -> CheckedModel:
    """What is known about `model` without running it."""
    signature = inspect.Signature(model.parameters)
    return CheckedModel(
        model.name, model.source, str(signature), model.root, model.commit, dict(model.files)
    )


def run_load(model: ResolvedModel, timeout: float = 3600.0) -> CheckedModel:
    """Import the model's entrypoints and call its load once, in a child process."""
    checked = describe(model)
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SETUP],
            input=dumps(model_class(model)),
            cwd=model.root,
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        checked.load_error = f"load did not finish within {timeout:.0f} s."
        return checked
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        checked.load_error = (done.stderr.decode(errors="replace") or output).strip()
        return checked
    for line in output.splitlines():
        if line.startswith("sieve-check: load took "):
            checked.load_seconds = float(line.split()[3])
    if checked.load_seconds is None:
        checked.load_seconds = time.monotonic() - started
    return checked


def report(checked: list[CheckedModel]) -> tuple[str, int]:
    """The text a command line prints for `checked`, and its exit status (1 if a load failed).

    (A file that does not validate raises before there is anything to report: print the
    `ModelYamlError` and exit 1.)
    """
    lines: list[str] = []
    for model in checked:
        where = f"{model.root}" + (f" at {model.commit[:12]}" if model.commit else "")
        lines.append(f"{model.source}: {model.name}{model.signature} -- code in {where}")
        for name, path in model.files.items():
            lines.append(f"    file {name}: {path}")
        if model.load_error is not None:
            lines.append("    load FAILED:")
            lines += [f"      {line}" for line in model.load_error.splitlines()]
        elif model.load_seconds is not None:
            lines.append(f"    load ok ({model.load_seconds:.2f} s)")
    return "\n".join(lines), 0 if all(m.ok for m in checked) else 1
