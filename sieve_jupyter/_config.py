"""`sieve.configure(...)`: kernel-wide settings of the manager (default backend, workers, user).

sieve.configure(backend="docker", workers=2, user="alice", gpu_fallback="cpu")
sieve.config.backend            # -> "docker"
"""

from __future__ import annotations

import dataclasses
import getpass
import os
from typing import Any

from sieve_jupyter._errors import ConfigurationError

__all__ = ["BACKEND_NAMES", "RAY_ACTOR_OPTIONS", "Config", "config", "configure"]

#: the backends a setting may name (backends/__init__.py maps each to its class)
BACKEND_NAMES = ("docker", "local", "ray")
#: what `ray_actor_options` may set on each worker actor (the rest the spec decides)
RAY_ACTOR_OPTIONS = ("memory", "num_cpus", "resources", "runtime_env", "scheduling_strategy")


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "user"


@dataclasses.dataclass
class Config:
    """Settings every function falls back on unless its decorator or magic says otherwise."""

    #: where workers run: "local" (processes of this machine, the default), "docker" or "ray"
    backend: str = "local"
    #: warm workers per function
    workers: int = 1
    #: the owner part of "user/name" in `sieve.function.get`
    user: str = dataclasses.field(default_factory=_default_user)
    #: what to do when a function asks for a GPU this machine lacks: "error" or "cpu" (warn, run)
    gpu_fallback: str = "error"
    #: seconds a worker may take to start and connect (not counting `__setup__`)
    start_timeout: float = 120.0
    #: finished jobs remembered for `%sieve jobs` and the side panel
    job_history: int = 10_000
    #: microseconds a waiting side polls before it sleeps: a `.run()` waiting for a quick
    #: answer, and an idle worker for its next call. Polling spares the cost of waking a
    #: sleeping process (tens of microseconds); 0 never polls (takes effect for new workers)
    busy_poll_us: int = 100
    #: a local worker answering a quick `.run()` after a pause runs on the caller's CPU
    #: (Linux), which spares the wake-ups across CPUs of the call and its answer; the caller
    #: then yields to it until it answers, even with busy_poll_us=0 (manager/_affinity.py);
    #: False leaves where workers run to the system (takes effect for new workers)
    follow_caller: bool = True
    #: Docker backend: base image override (None: chosen from the spec)
    docker_base_image: str | None = None
    #: Docker backend: network mode of worker containers ("bridge", "none", "host"); bridge by
    #: default because a `__setup__` usually downloads weights (the kernel socket needs none)
    docker_network: str = "bridge"
    #: Docker backend: a CA bundle to trust during builds (corporate proxies); None for none
    docker_ca_bundle: str | None = None
    #: Ray backend: the cluster to use ("ray://head:10001" through Ray Client, "auto", or
    #: "host:port"); None: a Ray already initialized in this kernel, else `RAY_ADDRESS`, else
    #: a Ray started on this machine
    ray_address: str | None = None
    #: Ray backend: options for every worker actor, read when it starts: `num_cpus`, `memory`,
    #: `resources` (e.g. {"high-mem": 1}), `scheduling_strategy`, `runtime_env` (merged with
    #: what the spec asks for, e.g. {"image_uri": ...})
    ray_actor_options: dict[str, Any] | None = None
    #: Ray backend: a registry the cluster's nodes pull from (e.g. "registry.example.com/ml").
    #: When set, a function whose environment only an image honours (system_packages,
    #: run_commands, base_image, cuda_version) runs in the image the Docker backend builds for
    #: it, with the kernel's Ray added, pushed there and given to its actors as `image_uri`
    ray_image_registry: str | None = None
    #: Ray backend: a folder of this machine that every worker starts in, on its node (Ray
    #: uploads it once, when the kernel connects to the cluster): a project's own modules and
    #: the files its code opens by a relative path. None: the workers start where Ray puts them
    ray_working_dir: str | None = None

    def validate(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ConfigurationError(
                f"backend: unknown backend {self.backend!r}. Fix: use one of "
                f"{', '.join(BACKEND_NAMES)}."
            )
        if not _is_number(self.workers, int) or not (1 <= self.workers <= 64):
            raise ConfigurationError(
                f"workers: must be an integer from 1 to 64, got {self.workers!r}. "
                "Fix: sieve.configure(workers=2)."
            )
        if not isinstance(self.user, str) or not self.user or "/" in self.user:
            raise ConfigurationError(
                f"user: must be a non-empty name without '/', got {self.user!r}. "
                "Fix: sieve.configure(user='alice')."
            )
        if self.gpu_fallback not in ("error", "cpu"):
            raise ConfigurationError(
                f"gpu_fallback: must be 'error' or 'cpu', got {self.gpu_fallback!r}. Fix: "
                "sieve.configure(gpu_fallback='cpu') to run on the CPU (with a warning) where "
                "the GPU asked for is missing."
            )
        if not _is_number(self.start_timeout) or self.start_timeout <= 0:
            raise ConfigurationError(
                f"start_timeout: must be a positive number of seconds, got "
                f"{self.start_timeout!r}. Fix: sieve.configure(start_timeout=300)."
            )
        if not _is_number(self.job_history, int) or self.job_history < 1:
            raise ConfigurationError(
                f"job_history: must be a positive integer, got {self.job_history!r}. Fix: "
                "sieve.configure(job_history=1000) to remember fewer finished jobs."
            )
        _validate_docker(self.docker_base_image, self.docker_network, self.docker_ca_bundle)
        _validate_ray(self.ray_address, self.ray_actor_options)
        _validate_registry(self.ray_image_registry)
        _validate_working_dir(self.ray_working_dir)
        if not isinstance(self.follow_caller, bool):
            raise ConfigurationError(
                f"follow_caller: must be True or False, got {self.follow_caller!r}. "
                "Fix: sieve.configure(follow_caller=False) to leave where workers run to "
                "the system."
            )
        if not _is_number(self.busy_poll_us, int) or not 0 <= self.busy_poll_us <= 10_000:
            raise ConfigurationError(
                f"busy_poll_us: must be an integer from 0 to 10000 microseconds, got "
                f"{self.busy_poll_us!r}. Fix: sieve.configure(busy_poll_us=0) to never poll."
            )


def _is_number(value: Any, kind: type | tuple[type, ...] = (int, float)) -> bool:
    """Whether `value` is a `kind` (a number by default), not a bool (which is an int)."""
    return isinstance(value, kind) and not isinstance(value, bool)


def _validate_docker(base_image: Any, network: Any, ca_bundle: Any) -> None:
    if base_image is not None and (
        not isinstance(base_image, str) or not base_image or base_image != base_image.strip()
    ):
        raise ConfigurationError(
            f"docker_base_image: must be an image reference or None, got {base_image!r}. Fix: "
            "sieve.configure(docker_base_image='python:3.11-slim'), or None to have it chosen "
            "from each function's spec."
        )
    if not isinstance(network, str) or not network.strip():
        raise ConfigurationError(
            f"docker_network: must be a network name, got {network!r}. Fix: use 'none', "
            "'bridge', 'host' or the name of a Docker network."
        )
    if ca_bundle is not None and (not isinstance(ca_bundle, str) or not os.path.isfile(ca_bundle)):
        raise ConfigurationError(
            f"docker_ca_bundle: must be a PEM file of this machine, got {ca_bundle!r}. Fix: "
            "sieve.configure(docker_ca_bundle='/etc/ssl/certs/ca-certificates.crt'), or None."
        )


def _validate_ray(address: Any, options: Any) -> None:
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ConfigurationError(
            f"ray_address: must be a cluster address or None, got {address!r}. Fix: "
            "sieve.configure(ray_address='ray://head:10001') (Ray Client) or 'auto'."
        )
    if options is None:
        return
    fix = "Fix: e.g. sieve.configure(ray_actor_options={'resources': {'high-mem': 1}})."
    if not isinstance(options, dict):
        raise ConfigurationError(
            f"ray_actor_options: must be a dict, got {type(options).__name__}. {fix}"
        )
    unknown = sorted(set(options) - set(RAY_ACTOR_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"ray_actor_options: {unknown[0]!r} cannot be set here (the spec decides GPUs and "
            f"restarts). Fix: use only {', '.join(RAY_ACTOR_OPTIONS)}."
        )
    for key in ("num_cpus", "memory"):
        value = options.get(key)
        if value is not None and (not _is_number(value) or value < 0):
            raise ConfigurationError(
                f"ray_actor_options.{key}: must be a number >= 0, got {value!r}. {fix}"
            )
    resources = options.get("resources")
    if resources is not None and (
        not isinstance(resources, dict)
        or not all(isinstance(k, str) and _is_number(v) and v > 0 for k, v in resources.items())
    ):
        raise ConfigurationError(
            f"ray_actor_options.resources: must map resource names to amounts > 0, got "
            f"{resources!r}. {fix}"
        )
    runtime_env = options.get("runtime_env")
    if runtime_env is not None and not isinstance(runtime_env, dict):
        raise ConfigurationError(
            f"ray_actor_options.runtime_env: must be a dict, got {type(runtime_env).__name__}. "
            "Fix: e.g. {'image_uri': 'registry/image:tag'}."
        )
    local = (runtime_env or {}).get("working_dir")
    if isinstance(local, str) and "://" not in local:
        # (Ray takes a folder of this machine only for the whole job, and refuses each actor)
        raise ConfigurationError(
            f"ray_actor_options.runtime_env.working_dir: {local!r} is a folder of this machine, "
            "which Ray uploads only for the kernel's whole job. Fix: "
            f"sieve.configure(ray_working_dir={local!r})."
        )


def _validate_working_dir(folder: Any) -> None:
    if folder is None:
        return
    if not isinstance(folder, str) or not os.path.isdir(folder):
        raise ConfigurationError(
            f"ray_working_dir: must be a folder of this machine, got {folder!r}. Fix: "
            "sieve.configure(ray_working_dir='.') for the notebook's folder."
        )


def _validate_registry(registry: Any) -> None:
    if registry is None:
        return
    fix = "Fix: e.g. sieve.configure(ray_image_registry='registry.example.com/ml')."
    if not isinstance(registry, str) or not registry.strip() or registry != registry.strip():
        raise ConfigurationError(
            f"ray_image_registry: must be a registry (host[:port][/path]), got {registry!r}. {fix}"
        )
    if "://" in registry:
        raise ConfigurationError(
            f"ray_image_registry: {registry!r} has a scheme; images are named without one "
            f"(the engine chooses https). {fix}"
        )
    last = registry.rsplit("/", 1)[-1]
    if "@" in registry or ("/" in registry and ":" in last) or registry.endswith("/"):
        raise ConfigurationError(
            f"ray_image_registry: {registry!r} names an image, not where images go: the "
            f"backend adds the name and tag itself. {fix}"
        )


config = Config()


def configure(**settings: Any) -> Config:
    """Change kernel-wide settings; unknown keys and bad values raise before anything changes.

    Args:
        **settings: any field of `Config` (backend, workers, user, gpu_fallback, ...).

    Raises:
        ConfigurationError: an unknown key (the message lists the known ones) or a bad value.
    """
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigurationError(
            f"{unknown[0]}: not a setting. Fix: use one of {', '.join(sorted(known))}."
        )
    candidate = dataclasses.replace(config, **settings)
    candidate.validate()
    for key, value in settings.items():
        setattr(config, key, value)
    return config
