"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any


def percentile(samples: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `samples`, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_calls(call: Callable[[], Any], n: int, warmup: int = 0) -> list[float]:
    """Seconds each of `n` calls took, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def report(ratios: Mapping[str, float], json_path: str | None, **results: Any) -> None:
    """Print `ratios` (all measured in this run), and write them with `results` to `json_path`
    when one is given."""
    width = max(map(len, ratios), default=0) + 1
    print("\nratios, measured in this run:")
    for label, value in ratios.items():
        print(f"  {label:<{width}} {value:6.2f}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({**results, "ratios": dict(ratios)}, fh, indent=2)
