"""Large arguments and results: a 100 MB numpy array to a warm worker and back, side by side.

    python benchmarks/bench_large.py             # full run
    python benchmarks/bench_large.py --quick     # fewer rounds, for a smoke check
    python benchmarks/bench_large.py --docker    # also through a Docker worker (needs an engine)

Each figure is measured in the same run, alternating engines round by round so all see the same
machine, and reported as ratios (absolute times drift between runs and machines):

- the floor: one `memcpy` of the array into a buffer that was written before (warm pages), and
  one into fresh memory (`ndarray.copy()`: the pages fault in as they are written);
- one way: the array as the argument of a call that returns a float;
- round trip: the array as the argument of a call that returns it (100 MB back);
- peers: `concurrent.futures.ProcessPoolExecutor` (pickled through a pipe), and Ray's
  `ray.put` + an actor call when Ray is installed.

`--sizes` measures where shared memory starts paying: `bytes` arguments of each size through
the same worker, once with every part in the socket and once through shared memory (the
kernel's channel threshold is switched between them; the worker's results stay small).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _timing import percentile, report, timed_calls

import sieve_jupyter as sieve

MB = 1 << 20


def total(a: np.ndarray) -> float:
    return float(a[:: 1 << 16].sum())  # (touches a little of it: the call, not a reduction)


def identity(a: np.ndarray) -> np.ndarray:
    return a


def length(data: bytes) -> int:
    return len(data)


def seconds(call: Callable[[], Any], repeat: int) -> float:
    """The median time of `repeat` calls of `call`, after one untimed call."""
    call()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def worker_connection(handle: Any) -> Any:
    """The manager's connection to the handle's (only) worker (for the threshold sweep)."""
    from sieve_jupyter.manager import get_manager

    pool = get_manager().record(handle.name).pool
    return next(iter(pool.workers.values()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docker", action="store_true", help="also through a Docker worker")
    parser.add_argument("--sizes", action="store_true", help="socket vs shared memory by size")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    repeat = 3 if args.quick else 5

    big = np.random.default_rng(0).random(100 * MB // 8)  # 100 MB of float64
    warm_target = np.empty_like(big)
    np.copyto(warm_target, big)

    ctx = multiprocessing.get_context("spawn")
    ppe = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx)
    ppe.submit(total, big[:8]).result()
    one_way = sieve.function(name="bench-large-total")(total)
    round_trip = sieve.function(name="bench-large-identity")(identity)
    one_way.run(big)
    round_trip.run(big)
    engines: dict[str, dict[str, Callable[[], Any]]] = {
        "memcpy (warm)": {"one": lambda: np.copyto(warm_target, big)},
        "memcpy (fresh)": {"one": big.copy},
        "sieve local": {"one": lambda: one_way.run(big), "trip": lambda: round_trip.run(big)},
        "ProcessPoolExecutor": {
            "one": lambda: ppe.submit(total, big).result(),
            "trip": lambda: ppe.submit(identity, big).result(),
        },
    }
    if args.docker:
        from bench_docker import configure_for_this_machine

        configure_for_this_machine()
        options: dict[str, Any] = {
            "backend": "docker",
            "python_packages": [f"numpy=={np.__version__}"],
        }
        d_one = sieve.function(name="bench-large-total-docker", **options)(total)
        d_trip = sieve.function(name="bench-large-identity-docker", **options)(identity)
        d_one.run(big)
        d_trip.run(big)
        engines["sieve docker"] = {"one": lambda: d_one.run(big), "trip": lambda: d_trip.run(big)}
    ray_engine = _ray_engine(big)
    if ray_engine is not None:
        engines["ray put + actor"] = ray_engine

    results: dict[str, list[float]] = {}
    for _ in range(rounds):  # alternate engines every round: same machine state for all
        for name, calls in engines.items():
            for kind, call in calls.items():
                results.setdefault(f"{name}.{kind}", []).append(seconds(call, repeat))
    med = {k: statistics.median(v) for k, v in results.items()}

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average "
        f"{os.getloadavg()[0]:.2f}, rounds={rounds} x {repeat} calls, 100 MB float64"
    )
    print(f"{'engine':<24}{'one way ms':>12}{'round trip ms':>15}")
    for name in engines:
        one, trip = med.get(f"{name}.one"), med.get(f"{name}.trip")
        print(
            f"{name:<24}{one * 1e3:>12.1f}{(f'{trip * 1e3:.1f}' if trip is not None else '-'):>15}"
        )
    floor = med["memcpy (warm).one"]
    ratios = {
        "sieve one way / warm memcpy (target <= 2)": med["sieve local.one"] / floor,
        "sieve round trip / (2 x warm memcpy) (target <= 2)": med["sieve local.trip"] / (2 * floor),
        "PPE one way / sieve one way": med["ProcessPoolExecutor.one"] / med["sieve local.one"],
        "PPE round trip / sieve round trip": (
            med["ProcessPoolExecutor.trip"] / med["sieve local.trip"]
        ),
        "sieve one way / fresh memcpy": med["sieve local.one"] / med["memcpy (fresh).one"],
    }
    if "sieve docker.one" in med:
        ratios["docker one way / local one way (target <= 1.3)"] = (
            med["sieve docker.one"] / med["sieve local.one"]
        )
        ratios["docker round trip / local round trip (target <= 1.3)"] = (
            med["sieve docker.trip"] / med["sieve local.trip"]
        )
    if "ray put + actor.one" in med:
        ratios["ray one way / sieve one way"] = med["ray put + actor.one"] / med["sieve local.one"]
        ratios["ray round trip / sieve round trip"] = (
            med["ray put + actor.trip"] / med["sieve local.trip"]
        )
    sizes: dict[str, dict[str, float]] = {}
    if args.sizes:
        sizes = threshold_sweep(sieve.function(name="bench-large-length")(length), args.quick)
    report(ratios, args.json, medians=med, sizes=sizes)
    ppe.shutdown()
    for handle in (one_way, round_trip):
        handle.stop()
    if args.docker:
        d_one.stop()
        d_trip.stop()


def threshold_sweep(handle: Any, quick: bool) -> dict[str, dict[str, float]]:
    """`.run()` p50 of a `bytes` argument of each size, through the socket and through shared
    memory, alternating (see the module docstring)."""
    handle.run(b"")
    channel = worker_connection(handle).data
    n = 100 if quick else 300
    out: dict[str, dict[str, float]] = {}
    print(f"\n{'argument':<12}{'socket us':>12}{'shared us':>12}{'shared/socket':>15}")
    for size in (16 << 10, 64 << 10, 256 << 10, MB, 4 * MB, 16 * MB):
        data = os.urandom(size)
        figures: dict[str, list[float]] = {"socket": [], "shared": []}
        for _ in range(3):
            for way, threshold in (("socket", 1 << 62), ("shared", 0)):
                channel.shm_threshold = threshold
                samples = timed_calls(
                    functools.partial(handle.run, data), max(10, n * 64 * 1024 // size), warmup=5
                )
                figures[way].append(percentile(samples, 0.5))
        socket_us = statistics.median(figures["socket"]) * 1e6
        shared_us = statistics.median(figures["shared"]) * 1e6
        out[str(size)] = {"socket_us": socket_us, "shared_us": shared_us}
        print(
            f"{size // 1024:>8} KiB{socket_us:>12.0f}{shared_us:>12.0f}"
            f"{shared_us / socket_us:>15.2f}"
        )
    handle.stop()
    return out


def _ray_engine(big: np.ndarray) -> dict[str, Callable[[], Any]] | None:
    try:
        import ray
    except ImportError:
        print("ray not installed: skipping ray.put + actor (pip install ray)")
        return None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    @ray.remote
    class Actor:
        def total(self, a: Any) -> float:
            return total(a)

        def identity(self, a: Any) -> Any:
            return a

    actor = Actor.remote()  # type: ignore[attr-defined]
    ray.get(actor.total.remote(ray.put(big[:8])))
    return {
        "one": lambda: ray.get(actor.total.remote(ray.put(big))),
        "trip": lambda: ray.get(actor.identity.remote(ray.put(big))),
    }


if __name__ == "__main__":
    main()
