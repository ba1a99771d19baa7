"""Ray's `image_uri`, end to end: a function whose environment only an image honours (an apt
package here) runs in the image the Docker backend builds for it, with Ray added, pushed to a
registry (`ray_image_registry`) and pulled by the cluster's own podman, as on a real cluster.

What a node needs for that, as Ray's `image_uri` support runs workers: podman usable without
root by the user the cluster runs as (Ray passes `--userns=keep-id`, which only a rootless podman
accepts), and a registry both sides reach. `scripts/setup-ray-image-env` makes the user and the
environment its cluster runs from; this module starts Debian's `docker-registry` on a loopback
port and a one-node cluster as that user, and removes the cluster, the registry, the images and
the containers after. The kernel is a process of its own (a process is a driver of one cluster:
this one is already the session cluster's).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ray_tier import RayCluster, _as_user, _unavailable, cluster_environment, free_ports
from support import run_script, script_env

pytestmark = pytest.mark.docker

USER = os.environ.get("SIEVE_TEST_RAY_USER", "sieve-ray")
IMAGE_ENV = Path(os.environ.get("SIEVE_TEST_RAY_IMAGE_ENV", "/opt/sieve-ray-image-env"))
_SETUP = "bash scripts/setup-ray-image-env (scripts/setup-test-env runs it)"


@dataclass
class ImageCluster:
    cluster: RayCluster
    registry: str
    token: str


def _missing() -> str | None:
    for tool in ("podman", "docker-registry"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"there is no user {USER}"
    if not (IMAGE_ENV / "bin" / "ray").exists():
        return f"{IMAGE_ENV} is missing"
    if os.geteuid() != 0:
        return "the test must run as root (it starts the cluster as another user)"
    return None


def _user_env(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "USER": USER, "LOGNAME": USER, "PATH": os.environ["PATH"]}


def _as(user_home: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env=_user_env(user_home),
        cwd=user_home,
        capture_output=True,
        text=True,
        timeout=300,
        **_as_user(USER),
    )


def _write_podman_config(home: Path, registry: str) -> None:
    """The cluster user's podman: the host's network (no /dev/net/tun needed), and the test's
    registry over plain HTTP (it listens on loopback only)."""
    folder = home / ".config" / "containers"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "containers.conf").write_text('[containers]\nnetns = "host"\n')
    (folder / "registries.conf").write_text(
        f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n'
    )
    entry = pwd.getpwnam(USER)
    for path in (home / ".config", folder, *folder.iterdir()):
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _forget_podman_processes() -> None:
    """End every process of the cluster's user (this test's own: whatever it runs was started
    here), rootless podman's pause process among them, and remove the pause process's pid
    files. Podman keeps its first run's temporary folder (a `TMPDIR` of an earlier run of this
    test) in its database and reads the pid file there on every run: one naming a process long
    gone, whose number another user's process has since taken, makes podman fail to join that
    process's user namespace ("cannot set user namespace")."""
    subprocess.run(["pkill", "-KILL", "-u", USER], check=False)
    uid = pwd.getpwnam(USER).pw_uid
    for stale in (
        *Path("/tmp").glob(f"*/podman-run-{uid}/libpod/tmp/pause.pid"),
        *Path("/tmp").glob(f"podman-run-{uid}/libpod/tmp/pause.pid"),
    ):
        stale.unlink(missing_ok=True)


@contextlib.contextmanager
def _registry(root: Path) -> Iterator[str]:
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    config = root / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\nhttp:\n  addr: {address}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("docker-registry did not answer within 30 s") from None
                time.sleep(0.2)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def image_cluster(docker_client: Any, docker_env: dict[str, str]) -> Iterator[ImageCluster]:
    problem = _missing()
    if problem is not None:
        _unavailable(f"{problem}. Fix: {_SETUP}")
    if not os.path.ismount("/dev/mqueue"):  # (podman's --ipc=host mounts it into containers)
        Path("/dev/mqueue").mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "mqueue", "mqueue", "/dev/mqueue"], check=True)
    home = Path(pwd.getpwnam(USER).pw_dir)
    _forget_podman_processes()
    root = Path(tempfile.mkdtemp(prefix="sjrimg-", dir="/tmp"))
    entry = pwd.getpwnam(USER)
    os.chown(root, entry.pw_uid, entry.pw_gid)
    token = os.urandom(16).hex()
    with _registry(Path(tempfile.mkdtemp(prefix="sjreg-", dir="/tmp"))) as registry:
        _write_podman_config(home, registry)
        env = cluster_environment(token, root)
        env.update(
            _user_env(home),
            PATH=f"{IMAGE_ENV / 'bin'}{os.pathsep}{os.environ['PATH']}",
            # Ray's check of the driver's Python against the cluster's: Debian's Python here
            # and in the image, the kernel's (perhaps a later patch release) there
            RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL="minor",
        )
        port, client_port = free_ports(2)
        cluster = RayCluster(
            f"127.0.0.1:{port}", client_port, root, env, ray=IMAGE_ENV / "bin" / "ray", user=USER
        )
        try:
            cluster.start_node("head")
            yield ImageCluster(cluster, registry, token)
        finally:
            cluster.stop()
            # what Ray's podman left (its `podman run` keeps stopped containers) and pulled
            _as(home, "podman", "rm", "--all", "--force")
            _as(home, "podman", "rmi", "--all", "--force")
            # and rootless podman's pause process, which holds its user namespace
            _forget_podman_processes()
            for image in docker_client.images.list():
                for tag in image.tags:
                    if tag.startswith(f"{registry}/"):
                        docker_client.images.remove(tag, force=True)
            shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(900)  # (the first build installs Ray into the image: minutes on CI)
def test_a_function_needing_an_image_runs_in_the_one_built_and_pushed_for_it(
    image_cluster: ImageCluster, tmp_path: Path
) -> None:
    done = run_script(
        f"""
        import json, warnings
        import sieve_jupyter as sieve

        sieve.configure(
            backend="ray",
            ray_address={image_cluster.cluster.address!r},
            ray_image_registry={image_cluster.registry!r},
        )

        @sieve.function(name="in-image", system_packages=["jq"])
        def in_image(x: int) -> dict:
            import subprocess, sys
            import ray

            out = subprocess.run(["jq", "-n", str(x)], capture_output=True, text=True)
            return {{
                "jq": out.stdout.strip(),
                "python": sys.executable,
                "image": ray.get_runtime_context().runtime_env.get("image_uri"),
            }}

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = in_image.run(41)
            second = in_image.push(1).result(timeout=120)
        print(json.dumps({{
            "first": first,
            "second": second,
            "warnings": [str(w.message) for w in caught],
        }}))
        """,
        tmp_path / "kernel.py",
        timeout=900,
        env=script_env(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=image_cluster.token,
            RAY_ADDRESS=None,
            RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL="minor",
        ),
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["first"]["jq"] == "41"  # the apt package is there: this is the built image
    assert seen["second"]["jq"] == "1"
    assert seen["first"]["python"] == "/opt/sieve/venv/bin/python"
    assert seen["first"]["image"].startswith(f"{image_cluster.registry}/sieve-jupyter-env:")
    # nothing is reported as not honoured: the image honours it all
    assert not [w for w in seen["warnings"] if "cannot honour" in w], seen["warnings"]
