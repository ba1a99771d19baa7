"""Local deployments: a detached ``sieve-jupyter serve`` process per version.

The deploying process binds the listening socket itself (so the port is allocated before the
server exists, and no other process can take it in between) and hands it to the server, which
a short-lived launcher starts in a session of its own: the server is never the kernel's child,
so killing or restarting the kernel (which signals its process group) leaves it running, and
its exit never waits on the kernel to be collected.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sieve_jupyter._errors import ConfigurationError, DeployError
from sieve_jupyter.backends._identity import ProcessIdentity
from sieve_jupyter.deploy._model import Deployment
from sieve_jupyter.deploy._paths import DIR_VARIABLE, READONLY_VARIABLE, slug
from sieve_jupyter.deploy._plan import Plan
from sieve_jupyter.deploy._registry import LocalRegistry
from sieve_jupyter.serve import TOKEN_VARIABLE

__all__ = ["RECORD_VARIABLE", "LocalKind", "bind_port", "spawn_server", "stop_server"]

#: the registry entry a local deployment's server records itself under (JSON, no token)
RECORD_VARIABLE = "SIEVE_DEPLOYMENT_RECORD"

#: starts the server in a new session and prints its pid; the server inherits the socket
_LAUNCHER = textwrap.dedent("""\
    import subprocess, sys
    fd = int(sys.argv[1]); log = sys.argv[2]; command = sys.argv[3:]
    with open(log, "ab", buffering=0) as out:
        server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  pass_fds=(fd,))
    print(server.pid, flush=True)
""")


def bind_port(host: str, port: int | None, taken: set[int]) -> socket.socket:
    """A listening socket on `host`: on `port`, or (None) on a free port that no deployment
    has recorded (a Docker deployment that is restarting does not hold its port meanwhile).

    Raises:
        ConfigurationError: `port` is in use, or recorded by another deployment.
    """
    if port is not None and port in taken:
        raise ConfigurationError(
            f"port: {port} belongs to another deployment. Fix: another port, or leave it out "
            "to have one allocated."
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((host, port or 0))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f"port: cannot listen on {host}:{port or 0} ({exc.strerror}). Fix: another "
                "port, or leave it out to have one allocated."
            ) from None
        if port is None and sock.getsockname()[1] in taken:
            sock.close()
            continue
        sock.listen(2048)
        return sock
    raise ConfigurationError("port: no free port found. Fix: name one with port=...")


def spawn_server(
    command: list[str], sock: socket.socket, log: Path, cwd: Path, env: dict[str, str]
) -> ProcessIdentity:
    """Start `command` (a ``sieve-jupyter serve``) detached, serving `sock`; `--fd` in the
    command must name ``sock.fileno()``. Returns the server's identity."""
    fd = sock.fileno()
    os.set_inheritable(fd, True)
    done = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, str(fd), str(log), *command],
        cwd=cwd,
        env=env,
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise DeployError(f"could not start the server process: {done.stderr.strip()}")
    return ProcessIdentity.of(int(done.stdout.strip()))


def stop_server(identity: ProcessIdentity, grace: float) -> bool:
    """SIGTERM the server (it drains: new predictions are refused, those in flight finish),
    then SIGKILL its process group if it is still there after `grace` seconds. Returns whether
    it ended by itself. A process that is not `identity` (its pid reused) is never signalled."""
    if not identity.is_alive():
        return True
    try:
        os.kill(identity.pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not identity.is_alive():
            return True
        time.sleep(0.05)
    if identity.is_alive():
        try:
            os.killpg(identity.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return False


class LocalKind:
    """Local deployments: versions in the registry, servers as detached processes."""

    name = "local"
    #: its server's workers: processes beside it, or actors of a Ray cluster
    backends: tuple[str, ...] = ("local", "ray")

    def __init__(self, registry: LocalRegistry | None = None) -> None:
        self.registry = registry if registry is not None else LocalRegistry()

    def versions(self, key: str | None = None) -> list[Deployment]:
        return [
            _deployment(e)
            for e in self.registry.entries()
            if key is None or f"{e['user']}/{e['name']}" == key
        ]

    def ports(self) -> set[int]:
        return self.registry.ports()

    def start(self, plan: Plan, taken: set[int], log: Callable[[str], None]) -> Deployment:
        """Write the bundle, start its server on an allocated port, record it (``starting``).

        Raises:
            ConfigurationError: the port asked for cannot be had.
            DeployError: the server process could not be started.
        """
        from sieve_jupyter.bundle import write_bundle

        ref = plan.ref
        directory = self.registry.root / slug(ref.user) / slug(ref.name) / plan.version
        bundle = write_bundle(plan.files, directory / "bundle")
        directory.chmod(0o700)
        sock = bind_port(plan.host, plan.port, taken)
        port = sock.getsockname()[1]
        host = f"[{plan.host}]" if ":" in plan.host else plan.host
        entry = {
            "user": ref.user,
            "name": ref.name,
            "version": plan.version,
            "digest": plan.digest,
            "state": "starting",
            "host": plan.host,
            "port": port,
            "url": f"http://{host}:{port}",
            "token": plan.token,
            "functions": list(plan.functions),
            "default": plan.default,
            "workers": plan.workers,
            "created_at": time.time(),
            "dir": str(directory),
            "backend": plan.backend,
        }
        try:
            command = [
                sys.executable,
                "-m",
                "sieve_jupyter.cli",
                "serve",
                str(bundle),
                "--host",
                plan.host,
                "--fd",
                str(sock.fileno()),
                "--workers",
                str(plan.workers),
                "--deployment",
                plan.identity,
            ]
            if plan.backend == "ray":
                command += ["--backend", "ray"]
                if plan.ray_address is not None:
                    command += ["--ray-address", plan.ray_address]
            env = _server_environment(plan, bundle, self.registry.root)
            # (the server records itself too, in case this process dies before it does)
            env[RECORD_VARIABLE] = json.dumps({k: v for k, v in entry.items() if k != "token"})
            identity = spawn_server(command, sock, directory / "server.log", directory, env)
        except BaseException:
            self.registry.remove_files({"dir": str(directory)})
            raise
        finally:
            sock.close()
        entry["process"] = identity.label
        self.registry.record(entry)
        log(
            f"{ref.key}: version {plan.version} started (local server, pid {identity.pid}, "
            f"{entry['url']}); waiting for its setup ..."
        )
        return _deployment(entry)

    def set_state(self, deployment: Deployment, state: str) -> None:
        self.registry.update(deployment.user, deployment.name, deployment.version, state=state)

    def alive(self, deployment: Deployment) -> tuple[bool, str]:
        """Whether its server still runs, and if not, the end of its log."""
        identity = ProcessIdentity.parse(deployment.process or "")
        if identity is not None and identity.is_alive():
            return True, ""
        return False, self.log_tail(deployment)

    def log_tail(self, deployment: Deployment, lines: int = 30) -> str:
        path = Path(deployment.directory or "/nonexistent") / "server.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, deployment: Deployment, grace: float) -> None:
        """Drain and stop its server, then forget it (entry and files)."""
        identity = ProcessIdentity.parse(deployment.process or "")
        with contextlib.suppress(DeployError):
            self.set_state(deployment, "retiring")
        if identity is not None:
            stop_server(identity, grace)
        self.registry.forget(deployment.user, deployment.name, deployment.version)

    def logs(self, deployment: Deployment, lines: int) -> tuple[list[str], Path]:
        """The last `lines` of its log, and the log's path (to follow it)."""
        path = Path(deployment.directory or "/nonexistent") / "server.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = ""
        return text.splitlines(keepends=True)[-lines:] if lines else [], path


def _server_environment(plan: Plan, bundle: Path, root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(plan.env)
    # The server runs the sieve-jupyter the bundle was made with (as its image would), with
    # this environment's packages (FastAPI, the user's) behind it.
    paths = [
        str(bundle / ".sieve" / "lib"),
        *filter(None, env.get("PYTHONPATH", "").split(os.pathsep)),
    ]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env[DIR_VARIABLE] = str(root)
    env.pop(READONLY_VARIABLE, None)
    env.pop(TOKEN_VARIABLE, None)  # only the deployment's own token, if it has one
    if plan.token:
        env[TOKEN_VARIABLE] = plan.token
    return env


def _deployment(entry: dict[str, Any]) -> Deployment:
    identity = ProcessIdentity.parse(entry.get("process") or "")
    started = None
    if identity is not None:
        started = entry.get("created_at")
    return Deployment(
        user=entry["user"],
        name=entry["name"],
        version=entry["version"],
        digest=entry["digest"],
        backend=entry.get("backend", "local"),
        url=entry["url"],
        functions=tuple(entry.get("functions", ())),
        default=entry.get("default", ""),
        workers=int(entry.get("workers", 1)),
        created_at=float(entry.get("created_at", 0)),
        state=entry.get("state", "serving"),
        token=entry.get("token"),
        process=entry.get("process"),
        directory=entry.get("dir"),
        started_at=started,
    )
