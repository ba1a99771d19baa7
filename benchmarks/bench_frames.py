"""Frames of a video pushed to two warm workers: frames per second, side by side in one run.

    python benchmarks/bench_frames.py                 # 1,000 Full HD frames per engine
    python benchmarks/bench_frames.py --frames 200    # a shorter run

The `batch_frames` notebook's loop at real size: each frame is a 1920x1080x3 `uint8` array
(6.2 MB), all of them pushed at once to a model with two workers, then gathered in order. The
model finds a bright square on every eighth pixel of the frame, so the figure is the cost of
moving frames, not of a model. Engines, alternating round by round so all see the same machine:

- sieve-jupyter, local workers (`workers=2`, `.push()` then `.result()`);
- `concurrent.futures.ProcessPoolExecutor(2)`, `submit` then `result` (pickled through pipes);
- Ray, when installed: two actors on a local cluster, `actor.find.remote(frame)` round-robin
  then `ray.get` (Ray puts large arguments in its shared-memory object store);
- the floor: one `memcpy` of each frame into a buffer written before (what one copy costs).

The frames cycle through 16 distinct arrays, so the run holds 100 MB of frames, not 6 GB;
each call still carries its frame's whole content.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _timing import report

import sieve_jupyter as sieve

HEIGHT, WIDTH = 1080, 1920
DISTINCT = 16


def make_frames() -> list[np.ndarray]:
    frames = []
    for i in range(DISTINCT):
        frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        x = 100 + i * 100
        frame[500:600, x : x + 100] = 255
        frames.append(frame)
    return frames


def find_square(frame: np.ndarray) -> tuple[int, int]:
    """Where the bright square is, from every eighth pixel (cheap: the transport is measured)."""
    sample = frame[::8, ::8]
    ys, xs = np.nonzero(sample[:, :, 0] > 128)
    return int(xs.mean()) * 8, int(ys.mean()) * 8


class Finder:
    """The same model as `find_square`, as sieve and Ray want it."""

    def __setup__(self) -> None:
        self.calls = 0

    def __predict__(self, frame: np.ndarray) -> tuple[int, int]:
        self.calls += 1
        return find_square(frame)

    def find(self, frame: np.ndarray) -> tuple[int, int]:
        return self.__predict__(frame)


def frames_per_second(
    run: Callable[[list[np.ndarray]], list[Any]], frames: list[np.ndarray]
) -> float:
    start = time.perf_counter()
    results = run(frames)
    elapsed = time.perf_counter() - start
    expected = [find_square(frame) for frame in frames[:DISTINCT]]
    assert results[:DISTINCT] == expected, "an engine answered wrongly"
    return len(frames) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=1000, help="frames per engine per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternate engines this often")
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    distinct = make_frames()
    frames = [distinct[i % DISTINCT] for i in range(args.frames)]
    target = np.empty_like(distinct[0])

    model = sieve.Model(name="bench-frames", workers=2)(Finder)
    ppe = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))

    def through_sieve(batch: list[np.ndarray]) -> list[Any]:
        futures = [model.push(frame) for frame in batch]
        return [future.result() for future in futures]

    def through_ppe(batch: list[np.ndarray]) -> list[Any]:
        futures = [ppe.submit(find_square, frame) for frame in batch]
        return [future.result() for future in futures]

    def one_copy_each(batch: list[np.ndarray]) -> list[Any]:
        for frame in batch:
            np.copyto(target, frame)
        return [find_square(frame) for frame in batch[:DISTINCT]]

    engines: dict[str, Callable[[list[np.ndarray]], list[Any]]] = {
        "memcpy per frame (floor)": one_copy_each,
        "sieve-jupyter, 2 local workers": through_sieve,
        "ProcessPoolExecutor(2)": through_ppe,
    }
    ray_run = None if args.no_ray else _ray_engine()
    if ray_run is not None:
        engines["Ray, 2 actors"] = ray_run
    for run in engines.values():  # warm: workers started, set up, pages touched
        run(frames[:4])

    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, run in engines.items():
            rates[name].append(frames_per_second(run, frames))
    med = {name: statistics.median(values) for name, values in rates.items()}

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average "
        f"{os.getloadavg()[0]:.2f}, {args.frames} frames of {WIDTH}x{HEIGHT}x3 uint8 "
        f"x {args.rounds} rounds"
    )
    print(f"{'engine':<34}{'frames/s':>10}{'MB/s':>10}")
    frame_mb = distinct[0].nbytes / 1e6
    for name, rate in med.items():
        print(f"{name:<34}{rate:>10.1f}{rate * frame_mb:>10.0f}")
    ours = med["sieve-jupyter, 2 local workers"]
    ratios = {
        "sieve / ProcessPoolExecutor": ours / med["ProcessPoolExecutor(2)"],
        "sieve / memcpy floor": ours / med["memcpy per frame (floor)"],
    }
    if "Ray, 2 actors" in med:
        ratios["sieve / Ray"] = ours / med["Ray, 2 actors"]
    report(ratios, args.json, frames_per_second=med)  # (ratios of frames/s)
    ppe.shutdown()
    model.stop()
    if ray_run is not None:
        import ray

        ray.shutdown()


def _ray_engine() -> Callable[[list[np.ndarray]], list[Any]] | None:
    try:
        import ray
    except ImportError:
        print("(Ray is not installed: its row is left out)")
        return None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    class RayFinder(Finder):
        def __init__(self) -> None:
            self.__setup__()

    actor_class = ray.remote(RayFinder)
    actors = [actor_class.remote() for _ in range(2)]

    def through_ray(batch: list[np.ndarray]) -> list[Any]:
        refs = [actors[i % 2].find.remote(frame) for i, frame in enumerate(batch)]
        return list(ray.get(refs))

    return through_ray


if __name__ == "__main__":
    main()
