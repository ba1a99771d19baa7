"""Speed of the Ray backend against raw Ray on the same cluster, measured side by side in one run.

    python benchmarks/bench_ray.py               # full run, on a one-node cluster of its own
    python benchmarks/bench_ray.py --quick       # fewer samples, for a smoke check
    RAY_ADDRESS=host:6379 python benchmarks/bench_ray.py    # an existing cluster

Needs the `ray` extra. Without RAY_ADDRESS it starts a head node the way the ray test tier does
(tests/ray_tier.py: from the cluster environment `scripts/setup-ray-cluster-env` makes, in a
process group of its own that it ends afterwards). Figures (target: within 1.2x of raw Ray on
both):
- warm `.run()` p50 through the backend vs a raw actor call (`ray.get(actor.f.remote(...))`),
  alternating rounds so both see the same machine;
- 10k `.push()` + gather through the backend vs 10k `actor.f.remote()` + one `ray.get`, on one
  actor each (the backend's default: one worker);
- a 100 MB numpy argument: `.run(array)` vs `ray.put(array)` + a raw actor call with the
  ref, and a 100 MB numpy result: `.run(n)` vs a raw actor call returning it (both sides
  through Ray's object store; the head node of its own gets a 1 GB store for it, and the job
  history keeps two jobs, since a kept result holds its place in the store).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _timing import percentile, timed_calls


class RawEcho:
    """The raw Ray baseline: the same work as the sieve model, as a plain actor."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, x: int) -> int:
        self.calls += 1
        return x

    def nbytes(self, array: Any) -> int:
        return int(array.nbytes)

    def make(self, n: int) -> Any:
        import numpy

        return numpy.ones(n, dtype=numpy.uint8)


def make_model(name: str) -> Any:
    import sieve_jupyter as sieve

    @sieve.Model(name=name, backend="ray")
    class Echo:
        def __setup__(self) -> None:
            self.calls = 0

        def __predict__(self, x: int) -> int:
            self.calls += 1
            return x

    return Echo


def make_large_models(name: str) -> tuple[Any, Any]:
    import sieve_jupyter as sieve

    @sieve.function(name=f"{name}-nbytes", backend="ray")
    def nbytes(array: Any) -> int:
        return int(array.nbytes)

    @sieve.function(name=f"{name}-make", backend="ray")
    def make(n: int) -> Any:
        import numpy

        return numpy.ones(n, dtype=numpy.uint8)

    return nbytes, make


def large_data(raw: Any, rounds: int, size: int = 100_000_000) -> dict[str, Any]:
    """A `size`-byte numpy argument and result, through the backend and raw Ray."""
    import numpy
    import ray

    import sieve_jupyter as sieve

    # The job history keeps every result, and a large one stays in Ray's object store while
    # it is kept (zero copy): keep two, as a raw caller dropping its results would.
    saved_history = sieve.config.job_history
    sieve.configure(job_history=2)
    nbytes, make = make_large_models("bench-ray-large")
    array = numpy.ones(size, dtype=numpy.uint8)
    assert nbytes.run(array) == size and make.run(size).nbytes == size  # (warm)
    assert ray.get(raw.nbytes.remote(ray.put(array))) == size
    samples: dict[str, list[float]] = {
        "sieve_arg": [],
        "raw_arg": [],
        "sieve_out": [],
        "raw_out": [],
    }
    for _ in range(rounds):
        samples["sieve_arg"] += timed_calls(lambda: nbytes.run(array), 1)
        samples["raw_arg"] += timed_calls(lambda: ray.get(raw.nbytes.remote(ray.put(array))), 1)
        samples["sieve_out"] += timed_calls(lambda: make.run(size), 1)
        samples["raw_out"] += timed_calls(lambda: ray.get(raw.make.remote(size)), 1)
    result: dict[str, Any] = {
        f"{key}_p50_ms": round(statistics.median(values) * 1e3, 1)
        for key, values in samples.items()
    }
    for kind in ("arg", "out"):
        result[f"{kind}_ratio_sieve_vs_raw"] = round(
            result[f"sieve_{kind}_p50_ms"] / result[f"raw_{kind}_p50_ms"], 2
        )
    nbytes.stop()
    make.stop()
    sieve.configure(job_history=saved_history)
    return result


def warm_latency(model: Any, raw: Any, rounds: int, per_round: int) -> dict[str, Any]:
    import ray

    samples: dict[str, list[float]] = {"sieve": [], "raw": []}
    for _ in range(rounds):
        samples["sieve"] += timed_calls(lambda: model.run(1), per_round)
        samples["raw"] += timed_calls(lambda: ray.get(raw.predict.remote(1)), per_round)
    result: dict[str, Any] = {}
    for key, values in samples.items():
        result[f"{key}_run_p50_us"] = round(statistics.median(values) * 1e6, 1)
        result[f"{key}_run_p99_us"] = round(percentile(values, 0.99) * 1e6, 1)
    result["run_p50_ratio_sieve_vs_raw"] = round(
        result["sieve_run_p50_us"] / result["raw_run_p50_us"], 2
    )
    return result


def push_gather(model: Any, raw: Any, n: int, rounds: int) -> dict[str, Any]:
    import ray

    sieve_s: list[float] = []
    raw_s: list[float] = []
    for _ in range(rounds):
        t = time.perf_counter()
        futures = [model.push(i) for i in range(n)]
        assert [f.result() for f in futures] == list(range(n))
        sieve_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        refs = [raw.predict.remote(i) for i in range(n)]
        assert ray.get(refs) == list(range(n))
        raw_s.append(time.perf_counter() - t)
    sieve_rate = n / statistics.median(sieve_s)
    raw_rate = n / statistics.median(raw_s)
    return {
        "sieve_push_gather_per_s": round(sieve_rate),
        "raw_remote_get_per_s": round(raw_rate),
        "push_gather_time_ratio_sieve_vs_raw": round(raw_rate / sieve_rate, 2),
    }


@contextlib.contextmanager
def cluster() -> Iterator[None]:
    """RAY_ADDRESS's cluster, or a head node of our own for the run."""
    if os.environ.get("RAY_ADDRESS"):
        yield
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from ray_tier import RayCluster, cluster_environment, free_ports

    root = Path(tempfile.mkdtemp(prefix="sjray-", dir="/tmp"))
    token = os.urandom(16).hex()
    port, client_port = free_ports(2)
    head = RayCluster(
        f"127.0.0.1:{port}",
        client_port,
        root,
        cluster_environment(token, root),
        object_store_bytes=1_000_000_000,
    )
    try:
        head.start_node("head")
        os.environ.update(
            {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_ADDRESS": head.address}
        )
        yield
    finally:
        head.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()
    rounds, per_round, n, gathers, large = (
        (3, 100, 2_000, 1, 5) if options.quick else (10, 300, 10_000, 3, 15)
    )

    with cluster():
        try:
            results = measure(rounds, per_round, n, gathers, large)
        except BaseException:
            # (printed now: once the cluster is gone, Ray's threads end the process with
            # their own complaint, and the error would never be seen)
            traceback.print_exc()
            sys.stderr.flush()
            raise
    text = json.dumps(results, indent=2)
    print(text)
    if options.json is not None:
        options.json.write_text(text + "\n")


def measure(rounds: int, per_round: int, n: int, gathers: int, large: int) -> dict[str, Any]:
    import ray

    from sieve_jupyter.manager import get_manager

    model = make_model("bench-ray")
    for _ in range(100):  # connects, starts the worker, warms both paths
        model.run(1)
    raw = ray.remote(RawEcho).options(max_restarts=0).remote()
    for _ in range(100):
        ray.get(raw.predict.remote(1))
    results = {
        "warm_run": warm_latency(model, raw, rounds, per_round),
        "push_gather": push_gather(model, raw, n, gathers),
        "large_data_100MB": large_data(raw, large),
    }
    ray.kill(raw)
    get_manager().close()
    ray.shutdown()
    return results


if __name__ == "__main__":
    main()
