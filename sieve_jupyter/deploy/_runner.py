"""The server of a deployment: ``sieve-jupyter serve BUNDLE --deployment user/name:version``.

It is the bundle server (the same warm workers, API and drain on SIGTERM) plus what a
deployment needs: it answers to its user's names (chained calls to ``user/other`` reach the
bundle's own functions first, then other deployments), says who it is in its health check,
writes its workers' lives and output to its log (what `sieve-jupyter logs` shows), and a local
one records itself in the registry while it runs (so it is found even if whoever started it
died first) and removes itself when it stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from sieve_jupyter._config import configure
from sieve_jupyter.backends._identity import ProcessIdentity
from sieve_jupyter.deploy._model import parse_name
from sieve_jupyter.deploy._paths import read_only
from sieve_jupyter.manager import Event

if TYPE_CHECKING:
    from sieve_jupyter.serve import ServeSettings
    from sieve_jupyter.serve._service import Service

__all__ = ["EventLog", "run_deployment"]


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


class EventLog:
    """Writes a manager's worker events as log lines: workers starting, ready (with their
    setup time), exiting or crashing; setup output and what each job printed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._workers: dict[str, dict[str, str]] = {}

    def __call__(self, event: Event) -> None:
        data = event.data
        if event.kind == "log":
            job = data.get("job_id")
            where = f"job {job}" if job else "setup"
            prefix = f"{_stamp()} [{data.get('function')} {where}] "
            if data.get("stream") == "stderr":
                prefix += "(stderr) "
            text = str(data.get("text", ""))
            lines = "".join(prefix + line + "\n" for line in text.rstrip("\n").split("\n"))
            self._write(lines)
        elif event.kind == "function":
            self._function(data)

    def _function(self, data: dict[str, Any]) -> None:
        name = str(data.get("name"))
        seen = self._workers.setdefault(name, {})
        now = {str(w["id"]): str(w["state"]) for w in data.get("workers", [])}
        lines = []
        for worker, state in now.items():
            if seen.get(worker) == state:
                continue
            info = next(w for w in data["workers"] if str(w["id"]) == worker)
            detail = ""
            if state == "ready" and info.get("setup_seconds") is not None:
                detail = f" (setup {float(info['setup_seconds']):.2f} s)"
            elif info.get("pid"):
                detail = f" (pid {info['pid']})"
            lines.append(f"{_stamp()} [{name}] worker {worker} {state}{detail}\n")
        for worker in set(seen) - set(now):
            lines.append(f"{_stamp()} [{name}] worker {worker} exited\n")
        if data.get("state") == "error" and data.get("error"):
            error = str(data["error"]).rstrip()
            lines.append(f"{_stamp()} [{name}] error: {error}\n")
        self._workers[name] = now
        self._write("".join(lines))

    def _write(self, text: str) -> None:
        if text:
            with contextlib.suppress(ValueError, OSError):
                self.out.write(text)
                self.out.flush()


def run_deployment(bundle: str, settings: ServeSettings, identity: str) -> int:
    """Serve `bundle` as deployment `identity` (``user/name:version``) until stopped."""
    from sieve_jupyter.serve import serve_bundle

    ref = parse_name(identity, "")
    configure(user=ref.user)
    record = _record()
    unregister: Callable[[], None] = lambda: None  # noqa: E731

    def prepare(service: Service) -> None:
        nonlocal unregister
        service.deployment = {"name": ref.key, "version": ref.version or ""}
        service.manager.events.subscribe(EventLog(sys.stdout), {"function", "log"})
        if record is not None:
            unregister = _register(record)

    print(f"{_stamp()} sieve-jupyter: deployment {ref} (pid {os.getpid()})", flush=True)
    try:
        return serve_bundle(bundle, settings, prepare)
    finally:
        unregister()
        print(f"{_stamp()} sieve-jupyter: deployment {ref} stopped", flush=True)


def _record() -> dict[str, Any] | None:
    from sieve_jupyter.deploy._local import RECORD_VARIABLE

    text = os.environ.pop(RECORD_VARIABLE, None)  # (workers need not see it)
    if not text or read_only():
        return None
    record: dict[str, Any] = json.loads(text)
    return record


def _register(record: dict[str, Any]) -> Callable[[], None]:
    """Record this server in the local registry; returns what removes it again."""
    from sieve_jupyter.deploy._registry import LocalRegistry

    registry = LocalRegistry()
    me = ProcessIdentity.current().label
    entry = {**record, "process": me}
    token = os.environ.get("SIEVE_SERVE_TOKEN")
    if token:
        entry["token"] = token
    registry.record(entry)

    def unregister() -> None:
        with contextlib.suppress(Exception):
            registry.forget(record["user"], record["name"], record["version"], process=me)

    return unregister
