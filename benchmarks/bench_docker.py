"""Speed of the Docker backend against the local backend, measured side by side in one run.

    python benchmarks/bench_docker.py            # full run
    python benchmarks/bench_docker.py --quick    # fewer samples, for a smoke check

Needs a running Docker engine. Where no registry is reachable, point it at a local base image:
``SIEVE_TEST_BASE_IMAGE``, else the image ``.ci/docker-engine.sh`` makes when the engine has
it, is used as the base, with the host CA bundle and host networking for the build, as in the
docker test tier.

Figures (targets from the issue):
- warm ``.run()`` p50 through a container vs a local worker, alternating rounds (<= 1.3x);
- time from a cached image to the first result (container start, connect, load, ``__setup__``);
- the second prepare of an unchanged environment in a new backend: no build at all.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _timing import percentile, timed_calls

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CI_BASE_IMAGE = "sieve-jupyter-test/base:bookworm"


def _local_test_base() -> str | None:
    """The base image `.ci/docker-engine.sh` makes, if this engine has it."""
    import docker
    import docker.errors

    try:
        docker.from_env().api.inspect_image(CI_BASE_IMAGE)
    except docker.errors.DockerException:
        return None
    return CI_BASE_IMAGE


def configure_for_this_machine() -> None:
    base = os.environ.get("SIEVE_TEST_BASE_IMAGE")
    if not base and not os.environ.get("SIEVE_DOCKER_BASE_IMAGE"):
        base = _local_test_base()
    if base:
        os.environ.setdefault("SIEVE_DOCKER_BASE_IMAGE", base)
        os.environ.setdefault("SIEVE_DOCKER_BUILD_NETWORK", "host")
        if HOST_CA_BUNDLE.exists():
            os.environ.setdefault("SIEVE_DOCKER_CA_BUNDLE", str(HOST_CA_BUNDLE))
    os.environ.setdefault("SIEVE_DOCKER_NETWORK", "none")


def make_model(name: str, backend: str) -> Any:
    import sieve_jupyter as sieve

    @sieve.Model(name=name, backend=backend)
    class Echo:
        def __setup__(self) -> None:
            self.calls = 0

        def __predict__(self, x: int) -> int:
            self.calls += 1
            return x

    return Echo


def warm_latency(rounds: int, per_round: int) -> dict[str, Any]:
    local = make_model("bench-local", "local")
    docker = make_model("bench-docker", "docker")
    for handle in (local, docker):  # start both, then warm them up
        for _ in range(200):
            handle.run(1)
    samples: dict[str, list[float]] = {"local": [], "docker": []}
    for _ in range(rounds):  # alternate so both see the same machine
        samples["local"] += timed_calls(lambda: local.run(1), per_round)
        samples["docker"] += timed_calls(lambda: docker.run(1), per_round)
    local.stop()
    docker.stop()
    result: dict[str, Any] = {}
    for key, values in samples.items():
        result[f"{key}_p50_us"] = round(statistics.median(values) * 1e6, 1)
        result[f"{key}_p99_us"] = round(percentile(values, 0.99) * 1e6, 1)
    result["p50_ratio_docker_vs_local"] = round(result["docker_p50_us"] / result["local_p50_us"], 2)
    return result


def first_result(repeats: int) -> dict[str, Any]:
    """Cached image -> first result, against a local worker's cold start."""
    make_model("bench-prime", "docker").run(1)  # the image exists from here on
    out: dict[str, list[float]] = {"docker": [], "local": []}
    for i in range(repeats):
        for backend in ("docker", "local"):
            handle = make_model(f"bench-first-{backend}-{i}", backend)
            t = time.perf_counter()
            handle.run(1)
            out[backend].append(time.perf_counter() - t)
            handle.stop()
    return {
        "docker_cached_image_to_first_result_s": round(statistics.median(out["docker"]), 3),
        "local_cold_start_to_first_result_s": round(statistics.median(out["local"]), 3),
    }


def rebuild_of_unchanged_environment() -> dict[str, Any]:
    from sieve_jupyter.backends.docker import DockerBackend
    from sieve_jupyter.spec import Environment, FunctionSpec

    spec = FunctionSpec(name="bench-env", environment=Environment(python_packages=["six"]))
    first = DockerBackend()
    t = time.perf_counter()
    first.prepare(spec, lambda line: None)
    first_s = time.perf_counter() - t
    second = DockerBackend()  # a new kernel, same environment
    t = time.perf_counter()
    second.prepare(spec, lambda line: None)
    second_s = time.perf_counter() - t
    first.close()
    second.close()
    return {
        "first_prepare_s": round(first_s, 3),
        "first_prepare_built": bool(first.built),
        "second_prepare_ms": round(second_s * 1e3, 1),
        "second_prepare_builds": len(second.built),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()
    configure_for_this_machine()
    rounds, per_round, repeats = (3, 200, 1) if options.quick else (10, 500, 3)

    results = {
        "python": sys.version.split()[0],
        "warm_run": warm_latency(rounds, per_round),
        "first_result": first_result(repeats),
        "unchanged_environment": rebuild_of_unchanged_environment(),
    }
    warm = results["warm_run"]
    print(
        f"warm .run() p50: docker {warm['docker_p50_us']} us, local {warm['local_p50_us']} us "
        f"-> {warm['p50_ratio_docker_vs_local']}x (target <= 1.3x)"
    )
    first = results["first_result"]
    print(
        f"cached image -> first result: {first['docker_cached_image_to_first_result_s']} s "
        f"(local cold start {first['local_cold_start_to_first_result_s']} s)"
    )
    again = results["unchanged_environment"]
    print(
        f"unchanged environment, second prepare: {again['second_prepare_ms']} ms, "
        f"{again['second_prepare_builds']} builds (target: 0)"
    )
    print(json.dumps(results, indent=2))
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
