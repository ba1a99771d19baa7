"""A Docker deployment survives a restart of the Docker engine (marker `docker`).

The machine's engine is shared with other work, so it is never restarted: the test starts an
engine of its own (``dockerd`` with its own data root, exec root, pidfile, socket and bridge;
no iptables, so it touches none of the shared engine's networking), gives it the test
base image, deploys there through ``DOCKER_HOST``, stops and starts that engine, and calls
the deployment by name again: the restart policy brought its container back. Everything of
the private engine (containers, images, mounts, folders) is gone afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _deployed import caller_script, cli, deploy_script
from support import run_script

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

ENGINE_START_SECONDS = 120.0


class PrivateEngine:
    """A ``dockerd`` of this test's own, which it may stop and start again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.pidfile = root / "dockerd.pid"
        self.log = root / "dockerd.log"
        self.host = f"unix://{self.socket}"
        #: a bridge of its own: with `--bridge=none` an engine deletes `docker0`, the shared
        #: engine's bridge (its deployments use the host's network and need none)
        self.bridge = f"sjbr{uuid.uuid4().hex[:6]}"
        self._process: subprocess.Popen[bytes] | None = None

    def add_bridge(self) -> None:
        for command in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", "10.213.77.1/24", "dev", self.bridge],
        ):
            subprocess.run(command, check=True, capture_output=True, timeout=30)

    def remove_bridge(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)

    def docker(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "-H", self.host, *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            **kwargs,
        )

    def start(self) -> None:
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                [
                    "dockerd",
                    f"--data-root={self.root / 'data'}",
                    f"--exec-root={self.root / 'exec'}",
                    f"--pidfile={self.pidfile}",
                    f"--host={self.host}",
                    f"--bridge={self.bridge}",
                    "--iptables=false",
                    "--ip-masq=false",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + ENGINE_START_SECONDS
        while self.docker("info").returncode != 0:
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"the private engine did not start:\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the engine as a host shutdown would (SIGTERM: it stops its containers)."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(ENGINE_START_SECONDS)
        except subprocess.TimeoutExpired:
            # (its session: the engine's own containerd goes with it)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def _unmount_under(root: Path) -> None:
    """Mounts a stopped engine leaves (its network namespace file), innermost first."""
    with open("/proc/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(root))]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@pytest.fixture
def private_engine(docker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A private engine with the test base image, which this test's processes use (through
    ``DOCKER_HOST``); afterwards nothing of it remains."""
    if shutil.which("dockerd") is None or shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("starting a private Docker engine needs dockerd, ip and root")
    # (a short path: the engine's sockets live under it, and Unix socket paths are short)
    root = Path(tempfile.mkdtemp(prefix="sj-engine-", dir="/tmp"))
    engine = PrivateEngine(root)
    try:
        engine.add_bridge()
        engine.start()
        base = docker_env["SIEVE_DOCKER_BASE_IMAGE"]
        saved = subprocess.run(["docker", "save", base], capture_output=True, timeout=600)
        assert saved.returncode == 0, saved.stderr
        loaded = subprocess.run(
            ["docker", "-H", engine.host, "load", "-q"],
            input=saved.stdout,
            capture_output=True,
            timeout=600,
        )
        assert loaded.returncode == 0, loaded.stderr
        monkeypatch.setenv("DOCKER_HOST", engine.host)
        yield engine
    finally:
        try:
            left = engine.docker("ps", "-aq").stdout.split()
            if left:
                engine.docker("rm", "-f", *left)
        finally:
            engine.stop()
            engine.remove_bridge()
            _unmount_under(root)
            shutil.rmtree(root, ignore_errors=True)


def test_a_docker_deployment_survives_a_restart_of_the_engine(
    private_engine: PrivateEngine, tmp_path: Path
) -> None:
    engine = private_engine
    user = f"er{uuid.uuid4().hex[:8]}"
    deployed = run_script(
        deploy_script(user, 'backend="docker"'), tmp_path / "deploy.py", timeout=1800
    )
    assert f"Deployed {user}/adder version 1-" in deployed.stdout
    (before,) = engine.docker("ps", "-q", "--no-trunc").stdout.split()
    called = json.loads(run_script(caller_script(user), tmp_path / "caller.py").stdout)
    assert (called["run"], called["push"]) == (3, 5)

    engine.restart()

    # the same container, started again by the engine (restart policy), serves the name
    again = json.loads(run_script(caller_script(user), tmp_path / "caller2.py").stdout)
    assert (again["run"], again["push"]) == (3, 5)
    assert again["version"] == called["version"]
    (after,) = engine.docker("ps", "-q", "--no-trunc").stdout.split()
    assert after == before
    state = json.loads(engine.docker("inspect", after).stdout)[0]["State"]
    assert state["Running"] is True

    gone = cli("undeploy", f"{user}/adder")
    assert gone.returncode == 0, gone.stderr
    assert engine.docker("ps", "-aq").stdout.split() == []
    images = engine.docker("images", "-q", "sieve-jupyter-deploy").stdout.split()
    assert images == []
