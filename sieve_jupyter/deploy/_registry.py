"""The registry of local deployments: one JSON file, changed under a file lock, that stays
correct when processes die.

Each entry records a server process by its identity (host, boot id, pid, start time), so an
entry whose process died -- killed, crashed, or gone with a reboot -- is recognised even after
its pid was handed to another process, and is removed (with its files) by whoever reads the
registry next. The file is replaced atomically, so a reader never needs the lock; writers take
it. Docker deployments are not in here: their containers' labels are their registry.

The folder is the user's alone (0700, the file 0600): entries may hold a deployment's token.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sieve_jupyter._errors import DeployError, SieveWarning
from sieve_jupyter.backends._identity import ProcessIdentity
from sieve_jupyter.deploy._paths import deployments_dir, log_lines, read_only

__all__ = ["LocalRegistry"]

_FILE = "registry.json"
_LOCK = ".lock"
_FORMAT = 1
#: seconds a removed version's log keeper may take to end (its server's workers may still be
#: leaving)
_KEEPER_WAIT = 10.0


def _alive(label: str | None) -> bool:
    identity = ProcessIdentity.parse(label or "")
    return identity is not None and identity.is_alive()


class LocalRegistry:
    """The local deployments of this machine's user (see the module docstring).

    Entries are plain dicts: ``user``, ``name``, ``version``, ``digest``, ``state``
    (starting, serving, retiring), ``process`` (the server's identity label), ``url``,
    ``port``, ``token``, ``functions``, ``default``, ``workers``, ``created_at``, ``dir``.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else deployments_dir()

    @property
    def path(self) -> Path:
        return self.root / _FILE

    # -- the file ----------------------------------------------------------------------------

    def _ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The registry's content, held under the lock; what the block leaves in it is
        written back (atomically) when it ends without an exception."""
        if read_only():
            raise DeployError(
                "the deployment registry is read-only here (inside a Docker deployment). Fix: "
                "deploy and undeploy from the machine itself."
            )
        self._ensure_root()
        fd = os.open(self.root / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._load()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                self._store(data)
        finally:
            os.close(fd)  # (releases the lock)

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {"format": _FORMAT, "deployments": [], "deploying": {}}
        try:
            data = json.loads(text)
        except ValueError:
            # Never happens through this class (writes are atomic); a hand-edited file that no
            # longer parses is kept aside, not silently lost.
            kept = self.path.with_name(f"registry.broken-{int(time.time())}.json")
            self.path.replace(kept)
            warnings.warn(
                f"the deployment registry {self.path} was not JSON; it was moved to "
                f"{kept} and a new one started.",
                SieveWarning,
                stacklevel=4,
            )
            return {"format": _FORMAT, "deployments": [], "deploying": {}}
        data.setdefault("deployments", [])
        data.setdefault("deploying", {})
        return dict(data)

    def _store(self, data: dict[str, Any]) -> None:
        fd, staging = tempfile.mkstemp(prefix=".registry-", dir=self.root)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(staging, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(staging)
            raise

    # -- reading -----------------------------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        """The live entries; dead ones are removed first (with their files), and said so."""
        data = self._load()
        if read_only():
            return list(data["deployments"])
        if all(_alive(e.get("process")) for e in data["deployments"]):
            return list(data["deployments"])
        removed: list[dict[str, Any]] = []
        with self.locked() as data:
            live: list[dict[str, Any]] = []
            for entry in data["deployments"]:
                (live if _alive(entry.get("process")) else removed).append(entry)
            data["deployments"] = live
        for entry in removed:
            self._report_dead(entry)
            self.remove_files(entry)
        return live

    @staticmethod
    def _report_dead(entry: dict[str, Any]) -> None:
        if entry.get("state") == "retiring":
            return  # it was being stopped: its end is no news
        tail = ""
        lines = [
            line.rstrip("\n") for line in log_lines(Path(entry.get("dir") or "/nonexistent"), 5)
        ]
        if lines:
            tail = " Its log ended with:\n    " + "\n    ".join(lines)
        identity = ProcessIdentity.parse(entry.get("process") or "")
        pid = f" {identity.pid}" if identity is not None else ""
        warnings.warn(
            f"deployment {entry['user']}/{entry['name']} version {entry['version']} had "
            f"stopped: its server process{pid} is gone (killed, crashed, or the machine "
            f"restarted), so it was removed from the registry.{tail}",
            SieveWarning,
            stacklevel=4,
        )

    def remove_files(self, entry: dict[str, Any]) -> None:
        """Remove an entry's folder, and its name's and user's folders once empty."""
        directory = entry.get("dir")
        if not directory:
            return
        path = Path(directory)
        if self.root not in path.parents:
            return  # never remove anything outside the registry's folder
        keeper = ProcessIdentity.parse(entry.get("log_keeper") or "")
        if keeper is not None and entry.get("process") != ProcessIdentity.current().label:
            # Its log keeper ends once the server and its workers have: nothing of the
            # version outlives its removal. (A server removing its own entry holds the pipe.)
            keeper.wait_gone(_KEEPER_WAIT)
        shutil.rmtree(path, ignore_errors=True)
        for parent in (path.parent, path.parent.parent):
            if parent == self.root:
                break
            with contextlib.suppress(OSError):
                parent.rmdir()  # only when empty

    # -- writing -----------------------------------------------------------------------------

    def record(self, entry: dict[str, Any]) -> None:
        """Add `entry`, or complete the one of the same version (the server and its deployer
        both record it; whichever comes second keeps what the first wrote)."""
        key = (entry["user"], entry["name"], entry["version"])
        with self.locked() as data:
            for existing in data["deployments"]:
                if (existing["user"], existing["name"], existing["version"]) == key:
                    for field, value in entry.items():
                        existing.setdefault(field, value)
                    if existing.get("token") is None and entry.get("token") is not None:
                        existing["token"] = entry["token"]
                    return
            data["deployments"].append(dict(entry))

    def update(self, user: str, name: str, version: str, **changes: Any) -> None:
        with self.locked() as data:
            for entry in data["deployments"]:
                if (entry["user"], entry["name"], entry["version"]) == (user, name, version):
                    entry.update(changes)

    def forget(self, user: str, name: str, version: str, process: str | None = None) -> None:
        """Remove a version's entry and its files (only if its process is `process`, when
        given: a server removing itself never removes its successor's record)."""
        removed: list[dict[str, Any]] = []
        with self.locked() as data:
            keep: list[dict[str, Any]] = []
            for entry in data["deployments"]:
                same = (entry["user"], entry["name"], entry["version"]) == (user, name, version)
                if same and process is not None and entry.get("process") not in (None, process):
                    same = False
                (removed if same else keep).append(entry)
            data["deployments"] = keep
        for entry in removed:
            self.remove_files(entry)

    def ports(self) -> set[int]:
        return {int(e["port"]) for e in self.entries() if e.get("port")}

    # -- one deploy of a name at a time ------------------------------------------------------

    @contextlib.contextmanager
    def deploying(
        self, key: str, timeout: float, waiting: Callable[[str], None] | None = None
    ) -> Iterator[None]:
        """Hold the right to change deployment `key` (``user/name``): another process that is
        deploying or undeploying it is waited for (a dead one is not)."""
        me = ProcessIdentity.current().label
        deadline = time.monotonic() + timeout
        told = False
        while True:
            with self.locked() as data:
                holder = data["deploying"].get(key)
                if holder is None or holder == me or not _alive(holder):
                    data["deploying"][key] = me
                    break
            if time.monotonic() > deadline:
                raise DeployError(
                    f"{key}: another process ({holder}) has been deploying it for longer than "
                    f"{timeout:.0f} s. Fix: wait for it, or stop that process."
                )
            if waiting is not None and not told:
                told = True
                waiting(f"{key}: waiting for another deploy of it (process {holder}) ...")
            time.sleep(0.2)
        try:
            yield
        finally:
            with self.locked() as data:
                if data["deploying"].get(key) == me:
                    del data["deploying"][key]
