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
from sieve_jupyter.deploy._paths import (
    DIR_VARIABLE,
    LOG_BYTES,
    LOG_FILES,
    READONLY_VARIABLE,
    SERVER_LOG,
    log_lines,
    slug,
)
from sieve_jupyter.deploy._plan import Plan
from sieve_jupyter.deploy._registry import LocalRegistry
from sieve_jupyter.serve import TOKEN_VARIABLE

__all__ = ["RECORD_VARIABLE", "LocalKind", "bind_port", "spawn_server", "stop_server"]

#: the registry entry a local deployment's server records itself under (JSON, no token)
RECORD_VARIABLE = "SIEVE_DEPLOYMENT_RECORD"

#: starts the server in a new session, its output piped to a log keeper in a session of its
#: own, and prints both pids; the server inherits the socket
_LAUNCHER = textwrap.dedent("""\
    import os, subprocess, sys
    fd, keeper, log, limit, files, *command = sys.argv[1:]
    read, write = os.pipe()
    kept = subprocess.Popen([sys.executable, "-S", "-c", keeper, log, limit, files],
                            stdin=read, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(read)
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=write,
                              stderr=subprocess.STDOUT, start_new_session=True,
                              pass_fds=(int(fd),))
    os.close(write)
    print(server.pid, kept.pid, flush=True)
""")
#: writes what the server (and its workers) print to the log, rotated (`LOG_BYTES`,
#: `LOG_FILES`), until the last of them has closed the pipe. It ignores the signals that stop
#: the server, and keeps reading when the log cannot be written (a full disk): a server whose
#: output went nowhere would fail on its next print.
_KEEPER = textwrap.dedent("""\
    import os, signal, sys
    log, limit, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    out = os.open(log, flags, 0o600)
    size = os.fstat(out).st_size
    while chunk := os.read(0, 1 << 16):
        while chunk:
            # what fits: all of it, else the whole lines that do (a line longer than a file
            # is cut), then the next file
            part = chunk
            if size + len(chunk) > limit:
                cut = chunk.rfind(b"\\n", 0, limit - size) + 1
                part = chunk[: cut or (0 if size else limit)]
            chunk = chunk[len(part) :]
            try:
                if part:
                    size += os.write(out, part)
                if chunk:
                    os.close(out)
                    for n in range(files - 1, 0, -1):
                        older = log if n == 1 else f"{log}.{n - 1}"
                        if os.path.exists(older):
                            os.replace(older, f"{log}.{n}")
                    out = os.open(log, flags | os.O_TRUNC, 0o600)
                    size = 0
            except OSError:  # (the rest of this read is lost; reading goes on)
                chunk = b""
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
    command: list[str],
    sock: socket.socket,
    log: Path,
    cwd: Path,
    env: dict[str, str],
    *,
    log_bytes: int = LOG_BYTES,
    log_files: int = LOG_FILES,
) -> tuple[ProcessIdentity, ProcessIdentity]:
    """Start `command` (a ``sieve-jupyter serve``) detached, serving `sock`; `--fd` in the
    command must name ``sock.fileno()``. What it prints goes to `log`, rotated at `log_bytes`
    (`log_files` files in all), by a keeper process that ends once the server and its
    workers have. Returns the server's identity and the keeper's."""
    fd = sock.fileno()
    os.set_inheritable(fd, True)
    keeper = [_KEEPER, str(log), str(log_bytes), str(log_files)]
    done = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, str(fd), *keeper, *command],
        cwd=cwd,
        env=env,
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    pids = done.stdout.split()
    if done.returncode != 0 or len(pids) != 2 or not all(pid.isdigit() for pid in pids):
        raise DeployError(f"could not start the server process: {done.stderr.strip()}")
    return ProcessIdentity.of(int(pids[0])), ProcessIdentity.of(int(pids[1]))


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
    if identity.wait_gone(grace):
        return True
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
            identity, keeper = spawn_server(command, sock, directory / SERVER_LOG, directory, env)
        except BaseException:
            self.registry.remove_files({"dir": str(directory)})
            raise
        finally:
            sock.close()
        entry["process"] = identity.label
        entry["log_keeper"] = keeper.label
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
        folder = Path(deployment.directory or "/nonexistent")
        return "".join(log_lines(folder, lines)).rstrip("\n")

    def stop(self, deployment: Deployment, grace: float) -> None:
        """Drain and stop its server, then forget it (entry and files); returns once its log
        keeper, which ends after the server's workers, has ended too."""
        identity = ProcessIdentity.parse(deployment.process or "")
        with contextlib.suppress(DeployError):
            self.set_state(deployment, "retiring")
        if identity is not None:
            stop_server(identity, grace)
        self.registry.forget(deployment.user, deployment.name, deployment.version)
        # (a server that stopped by itself removed its own entry and folder, before its log
        # keeper could end: removing the folder again waits for the keeper, as `forget` does)
        self.registry.remove_files(
            {"dir": deployment.directory, "log_keeper": deployment.log_keeper}
        )

    def logs(self, deployment: Deployment, lines: int) -> tuple[list[str], Path]:
        """The last `lines` of its log, and the log's path (to follow it)."""
        folder = Path(deployment.directory or "/nonexistent")
        return log_lines(folder, lines), folder / SERVER_LOG


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
        log_keeper=entry.get("log_keeper"),
        directory=entry.get("dir"),
        started_at=started,
    )
