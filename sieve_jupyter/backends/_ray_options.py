"""What a function's spec becomes on a Ray cluster: its worker actors' options, and whether the
cluster can place them. Pure functions of the spec, the settings and the cluster's node list
(nothing here talks to Ray), so each mapping is tested on its own.

    gpu=sieve.gpu.T4(split=2)   -> num_gpus=0.5, accelerator_type="T4"
                                   (Ray requires the node resource "accelerator_type:T4")
    python_packages             -> runtime_env["pip"]
    the package's runtime       -> the job's runtime_env["py_modules"] (sieve_jupyter and
                                   cloudpickle travel with the kernel's Ray job: the cluster
                                   needs only Ray)
    environment_variables       -> not in the runtime_env: their values travel with the call
                                   that loads the worker (a runtime_env is shown by Ray's
                                   dashboard and `ray list actors --detail`)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cloudpickle

from sieve_jupyter.backends._base import image_only_settings

if TYPE_CHECKING:
    from sieve_jupyter.spec import FunctionSpec, GpuRequest

__all__ = [
    "ACCELERATOR_TYPES",
    "NodeResources",
    "actor_options",
    "infeasibility",
    "package_modules",
    "spread_node",
    "unsupported_notes",
]

#: Sieve's GPU kinds -> Ray's accelerator types (`ray.util.accelerators`). Ray has no type for
#: an A100 slice: an A10020GB request asks for any A100 (and a share of it with split=).
ACCELERATOR_TYPES: dict[str, str] = {
    "T4": "T4",
    "L4": "L4",
    "A10G": "A10G",
    "V100": "V100",
    "A100": "A100",
    "A10020GB": "A100",
    "A10080GB": "A100-80G",
    "L40S": "L40S",
    "H100": "H100",
    "H200": "H200",
    "B200": "B200",
}

#: one node as `ray.nodes()` describes it: {"NodeManagerAddress": ..., "Resources": {...},
#: "Alive": bool}
NodeResources = Mapping[str, Any]


def package_modules() -> list[str]:
    """The directories the kernel's Ray job ships to the cluster: this package (its runtime
    runs in the actors) and cloudpickle (the code of notebook functions travels pickled by it,
    and must be unpickled by the same version). Ray uploads them once, by content hash."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [here, os.path.dirname(os.path.abspath(cloudpickle.__file__))]


def _gpu_share(request: GpuRequest) -> float:
    return 1.0 / request.split


def _image_in(runtime_env: Mapping[str, Any]) -> str | None:
    """The image a runtime_env runs its worker in (`image_uri`, or Ray's older `container`)."""
    image = runtime_env.get("image_uri") or runtime_env.get("container")
    return str(image) if image else None


def given_image(extra: Mapping[str, Any] | None) -> str | None:
    """The image `ray_actor_options` gives every worker, if any."""
    return _image_in((extra or {}).get("runtime_env") or {})


def needs_built_image(
    spec: FunctionSpec, extra: Mapping[str, Any] | None, registry: str | None
) -> bool:
    """Whether the backend builds and pushes an image for `spec` (`ray_image_registry`): only
    an image honours some of its environment, and none is given by hand."""
    return bool(registry) and not given_image(extra) and bool(image_only_settings(spec))


def actor_options(
    spec: FunctionSpec, extra: Mapping[str, Any] | None = None, image: str | None = None
) -> dict[str, Any]:
    """The `.options(...)` of each worker actor of `spec`.

    `extra` is `sieve.config.ray_actor_options` (num_cpus, memory, resources,
    scheduling_strategy, runtime_env); its runtime_env is merged with the spec's. `image` is
    the one the backend built for `spec` (its `image_uri`). In an image (built, or given in
    `extra`), the spec's Python packages are the image's: Ray takes no `pip` beside an
    `image_uri`.
    """
    extra = dict(extra or {})
    runtime_env = dict(extra.pop("runtime_env", None) or {})
    if image is not None:
        runtime_env["image_uri"] = image
    options: dict[str, Any] = {
        # The pool replaces a dead worker itself (blaming only its running job): Ray must
        # neither restart the actor nor run a call again.
        "max_restarts": 0,
        "max_task_retries": 0,
        # Spread a function's workers over the cluster's nodes (the backend then names the
        # node for each worker: `spread_node`).
        "scheduling_strategy": "SPREAD",
    }
    gpu = spec.gpu
    if gpu is not None and not gpu.is_cpu:
        options["num_gpus"] = _gpu_share(gpu)
        options["accelerator_type"] = ACCELERATOR_TYPES[gpu.kind]
    options.update(extra)
    packages = list(spec.environment.python_packages)
    if packages and not _image_in(runtime_env):
        runtime_env["pip"] = [*runtime_env.get("pip", []), *packages]
    if runtime_env:
        options["runtime_env"] = runtime_env
    return options


def unsupported_notes(
    spec: FunctionSpec, extra: Mapping[str, Any] | None = None, registry: str | None = None
) -> list[str]:
    """What the Ray backend cannot honour for `spec` (said once, never silently dropped)."""
    image = given_image(extra)
    env = spec.environment
    ignored = [] if image or registry else image_only_settings(spec)
    kernel_python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    notes = []
    if ignored:
        notes.append(
            "the ray backend cannot honour " + ", ".join(ignored) + " without an image: workers "
            "run in the cluster's own environment. Fix: "
            "sieve.configure(ray_image_registry='<a registry the nodes pull from>') to have "
            "the image built and pushed for you, or give one by hand as "
            "sieve.configure(ray_actor_options={'runtime_env': {'image_uri': ...}})."
        )
    if image and env.python_packages:
        notes.append(
            f"python_packages {list(env.python_packages)} are not installed by the ray "
            f"backend: the workers run in the image {image}, which must have them (Ray takes "
            "no pip packages beside an image_uri)."
        )
    if env.python_version != kernel_python:
        notes.append(
            f"python_version {env.python_version!r} cannot be honoured: Ray workers run the "
            f"cluster's Python, which must be the kernel's ({kernel_python}) since code "
            "travels pickled."
        )
    return notes


def _describe_nodes(nodes: Sequence[NodeResources]) -> str:
    parts = []
    for node in nodes:
        resources = node.get("Resources", {})
        cpus = resources.get("CPU", 0)
        gpus = resources.get("GPU", 0)
        kinds = sorted(
            k.removeprefix("accelerator_type:")
            for k in resources
            if k.startswith("accelerator_type:")
        )
        what = f"{cpus:g} CPU"
        what += f", {gpus:g} GPU ({', '.join(kinds) or 'type unknown'})" if gpus else ", no GPU"
        custom = sorted(
            k
            for k in resources
            if k not in ("CPU", "GPU", "memory", "object_store_memory")
            and not k.startswith(("node:", "accelerator_type:"))
        )
        if custom:
            what += f", resources {', '.join(custom)}"
        parts.append(f"{node.get('NodeManagerAddress', '?')}: {what}")
    return "; ".join(parts) or "no live nodes"


def _needs(options: Mapping[str, Any]) -> dict[str, float]:
    """The node resources one actor with `options` needs (in Ray's names)."""
    need: dict[str, float] = dict(options.get("resources") or {})
    if options.get("num_gpus"):
        need["GPU"] = float(options["num_gpus"])
    if options.get("accelerator_type"):
        need[f"accelerator_type:{options['accelerator_type']}"] = 0.001
    for key in ("num_cpus", "memory"):
        if options.get(key):
            need["CPU" if key == "num_cpus" else "memory"] = float(options[key])
    return need


def _fitting(need: Mapping[str, float], nodes: Sequence[NodeResources]) -> list[NodeResources]:
    """The live nodes whose total resources hold `need`."""
    return [
        n
        for n in nodes
        if n.get("Alive", True)
        and all(n.get("Resources", {}).get(k, 0) >= v for k, v in need.items())
    ]


def spread_node(
    options: Mapping[str, Any],
    nodes: Sequence[NodeResources],
    siblings: Sequence[str],
    others: Sequence[str] = (),
) -> str | None:
    """The node for a function's next worker: of the nodes that can hold it, the one with the
    fewest of the function's live workers (`siblings`: their node ids), then the fewest workers
    of any function (`others`), then the first Ray lists. None when no node fits (Ray then says
    why it waits).

    Ray's own "SPREAD" is a round robin over every task and actor the cluster schedules: two
    workers of one function started while anything else is placed can land on the same node.
    Counting the function's workers spreads them every time.
    """
    fitting = _fitting(_needs(options), nodes)
    if not fitting:
        return None
    # (min keeps the first of equals: Ray's order breaks ties)
    best = min(fitting, key=lambda n: (siblings.count(n["NodeID"]), others.count(n["NodeID"])))
    node_id: str = best["NodeID"]
    return node_id


def infeasibility(
    spec: FunctionSpec, workers: int, options: Mapping[str, Any], nodes: Sequence[NodeResources]
) -> str | None:
    """Why `workers` actors with `options` can never be placed on `nodes` (the cluster's live
    nodes, with their total resources), or None when they can.

    A worker needs one node with all it asks for. GPUs are counted across nodes: `workers`
    shares of `num_gpus` each must fit in the matching cards of the cluster (whole cards are not
    split between nodes). CPU and memory are not counted: a warm actor holds none by default.
    """
    live = [n for n in nodes if n.get("Alive", True)]
    need = _needs(options)
    share = float(options.get("num_gpus") or 0)
    accelerator = options.get("accelerator_type")
    fitting = _fitting(need, live)
    asked = ", ".join(f"{k}={v:g}" for k, v in sorted(need.items())) or "nothing"
    what = (
        f"{spec.gpu} ({accelerator}, {share:g} GPU per worker)"
        if share and spec.gpu
        else f"workers with {asked}"
    )
    cluster = _describe_nodes(live)
    if not fitting:
        field = "gpu" if share else "ray_actor_options"
        fix = (
            "Fix: ask for a GPU kind the cluster has, add such nodes, or drop gpu= to run "
            "on the CPU."
            if share
            else "Fix: ask for resources a node has (ray_actor_options), or start such a node."
        )
        return (
            f"{field}: asked for {what}, but no node of the cluster has that; it has: "
            f"{cluster}. {fix}"
        )
    if share:
        slots = sum(int(n["Resources"].get("GPU", 0) / share + 1e-9) for n in fitting)
        if slots < workers:
            return (
                f"gpu: workers={workers} each need {share:g} of a {accelerator} GPU, but the "
                f"cluster has room for {slots} such workers ({cluster}). Fix: workers={slots}, "
                f"or a larger split such as sieve.gpu.{spec.gpu.kind if spec.gpu else ''}"
                f"(split={workers})."
            )
    return None
