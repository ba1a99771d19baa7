"""Speed of the local backend against its peers, measured side by side in one run.

    python benchmarks/bench_core.py            # full run (~1 minute)
    python benchmarks/bench_core.py --quick    # fewer samples, for a smoke check

Each figure is measured for sieve-jupyter and for its peers in the same process run,
alternating rounds so all see the same machine, and reported as ratios (absolute times drift
between runs and machines). Peers: a raw pickled `multiprocessing.Pipe` round trip (the floor
for an RPC; for many small jobs, the same pipe with one reader thread and a `Future` per call),
`concurrent.futures.ProcessPoolExecutor`, and Ray / Dask when installed. The CPU columns are
what a warm call costs in CPU time (this process plus the worker process), which busy polling
(`--busy-poll-us`) trades for latency. The "paused" column is the p50 of calls made 0.3 ms
apart, after both sides have gone to sleep (a notebook's cells, a server's requests), where the
wake-ups cost most (`--no-follow` shows what keeping the worker on the caller's CPU spares).
The pipe is also timed with both its ends kept on one CPU, as ours run without polling: what
the round trip costs without a wake-up on the other CPU, the part that moves most from hour to
hour on a virtual machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _timing import percentile, report, timed_calls

import sieve_jupyter as sieve


def noop(x: Any = None) -> Any:
    return x


def array_sum(a: np.ndarray) -> float:
    return float(a.sum())


def _pipe_server(conn: Any) -> None:
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send(noop(msg))


def _futures_server(conn: Any) -> None:
    """The far end of the raw Pipe + thread + Future peer: answers each (id, value) in order."""
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send((msg[0], noop(msg[1])))


class PipeFutures:
    """The floor for many small jobs: a raw pickled `Pipe` to one process, a `Future` per call
    and one thread that reads the answers and resolves them (no batching, no bookkeeping)."""

    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.server = ctx.Process(target=_futures_server, args=(child,), daemon=True)
        self.server.start()
        self.pending: dict[int, concurrent.futures.Future[Any]] = {}
        self.lock = threading.Lock()
        self.next_id = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def push(self, value: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self.lock:
            self.next_id += 1
            call_id = self.next_id
            self.pending[call_id] = future
            self.conn.send((call_id, value))
        return future

    def _read(self) -> None:
        while True:
            try:
                call_id, value = self.conn.recv()
            except (EOFError, OSError):
                return
            self.pending.pop(call_id).set_result(value)

    def close(self) -> None:
        with self.lock:
            self.conn.send(None)
        self.server.join(5)
        self.conn.close()


def pin(pids: list[int]) -> str:
    """Put every engine's worker process on the last CPU; the caller (the "kernel") stays free.

    Where a process lands moves a local round trip between ~15 us (same core) and ~65 us
    (across cores); pinning gives every engine's worker the same placement. The kernel is not
    confined to one core: a Jupyter kernel's threads never are.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return f"not pinned (only CPU {cpus})"
    for pid in pids:
        os.sched_setaffinity(pid, {cpus[-1]})
    return f"workers pinned to CPU {cpus[-1]}, the kernel unpinned"


def latency(call: Callable[[], Any], n: int) -> list[float]:
    return timed_calls(call, n, warmup=min(200, n))


#: the pause before each call of the "after a pause" latency: longer than the polling time, so
#: both sides have gone to sleep, as between a notebook's cells or a server's requests
PAUSE_SECONDS = 0.0003


def paused_latency(call: Callable[[], Any], n: int) -> list[float]:
    """Seconds each of `n` calls took, each made `PAUSE_SECONDS` after the one before."""
    out = []
    for _ in range(n):
        time.sleep(PAUSE_SECONDS)
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def one_cpu_latency(peers: Peers, n: int) -> list[float]:
    """The raw pipe's round trip with this thread kept on its server's CPU: what the pipe
    costs without a wake-up on the other CPU, as ours runs without polling (its worker
    follows the caller). Between this and the usual figure lies what waking a process on
    the other CPU costs on this machine at the time."""
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, os.sched_getaffinity(peers.server.pid))  # (this thread only)
    try:
        return latency(peers.pipe_call, n)
    finally:
        os.sched_setaffinity(0, mine)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time used so far by this process and the given ones (user + system)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def latency_with_cpu(call: Callable[[], Any], n: int, pids: list[int]) -> tuple[list[float], float]:
    """Latency samples, and CPU seconds per call (this process and `pids`) over the run."""
    before = cpu_seconds(pids)
    samples = latency(call, n)
    return samples, (cpu_seconds(pids) - before) / (n + min(200, n))


class Peers:
    """Warm peers, started once."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.parent, child = ctx.Pipe()
        self.server = ctx.Process(target=_pipe_server, args=(child,), daemon=True)
        self.server.start()
        self.ppe = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx)
        self.ppe.submit(noop).result()
        self.futures = PipeFutures(ctx)
        self.futures.push(1).result()
        self.pids = [self.server.pid, self.futures.server.pid, *self.ppe._processes]  # type: ignore[list-item]

    def pipe_call(self) -> None:
        self.parent.send(1)
        self.parent.recv()

    def ppe_call(self) -> None:
        self.ppe.submit(noop, 1).result()

    def close(self) -> None:
        self.parent.send(None)
        self.server.join(5)
        self.ppe.shutdown()
        self.futures.close()


def throughput(push: Callable[[Any], concurrent.futures.Future[Any]], n: int) -> float:
    t = time.perf_counter()
    futures = [push(i) for i in range(n)]
    for f in futures:
        f.result()
    return n / (time.perf_counter() - t)


def cold_start_sieve() -> float:
    t = time.perf_counter()

    @sieve.function(name=f"cold-{time.monotonic_ns()}")
    def cold(x: int) -> int:
        return x

    cold.run(1)
    elapsed = time.perf_counter() - t
    cold.stop()
    return elapsed


def cold_start_ppe() -> float:
    t = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn")
    ) as ppe:
        ppe.submit(noop, 1).result()
        return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--no-pin", action="store_true", help="leave CPU placement to the OS")
    parser.add_argument("--no-optional", action="store_true", help="skip the Ray / Dask peers")
    parser.add_argument(
        "--busy-poll-us",
        type=int,
        default=None,
        help="sieve.configure(busy_poll_us=...) for this run (0: never poll)",
    )
    parser.add_argument(
        "--no-follow",
        action="store_true",
        help="sieve.configure(follow_caller=False), and pin our workers like the peers' (by "
        "default a quick .run()'s worker runs on the caller's CPU, and ours are not pinned)",
    )
    args = parser.parse_args()
    if args.busy_poll_us is not None:
        sieve.configure(busy_poll_us=args.busy_poll_us)
    if args.no_follow:
        sieve.configure(follow_caller=False)
    n_lat = 1000 if args.quick else 3000
    n_push = 2000 if args.quick else 10_000
    rounds = 2 if args.quick else 3

    peers = Peers()
    fn = sieve.function(name="bench-noop")(noop)
    fn.run(1)
    big_fn = sieve.function(name="bench-array")(array_sum)
    big = np.ones(100 * 1024 * 1024 // 8)
    big_fn.run(big)
    # A worker pinned by hand stays where it was put (following the caller only moves a worker
    # within its own CPUs), so ours are pinned like the peers' only when they do not follow.
    sieve_pids = [w["pid"] for h in (fn, big_fn) for w in h.workers]
    pinned = [*peers.pids, *(sieve_pids if args.no_follow else [])]
    placement = pin(pinned) if not args.no_pin else "not pinned"
    if not args.no_pin and not args.no_follow:
        placement += " (ours follow the caller instead)"

    results: dict[str, list[float]] = {}

    def record(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    for _ in range(rounds):  # alternate engines every round: same machine state for all
        for key, call, pids in (
            ("pipe", peers.pipe_call, [peers.server.pid]),
            ("ppe", peers.ppe_call, list(peers.ppe._processes)),  # type: ignore[arg-type]
            ("sieve", lambda: fn.run(1), [w["pid"] for w in fn.workers]),
        ):
            samples, cpu = latency_with_cpu(call, n_lat, pids)
            record(f"{key}.cpu", cpu)
            record(f"{key}.p50", percentile(samples, 0.5))
            record(f"{key}.p99", percentile(samples, 0.99))
            if key != "ppe":
                record(f"{key}.paused", percentile(paused_latency(call, n_lat // 3), 0.5))
        if not args.no_pin:  # (its server is on one CPU only when pinned)
            record("pipe1.p50", percentile(one_cpu_latency(peers, n_lat), 0.5))
        record("ppe.rate", throughput(lambda i: peers.ppe.submit(noop, i), n_push))
        record("pipe.rate", throughput(peers.futures.push, n_push))
        record("sieve.rate", throughput(fn.push, n_push))
        for key, call in (
            ("ppe", lambda: peers.ppe.submit(array_sum, big).result()),
            ("sieve", lambda: big_fn.run(big)),
        ):
            t = time.perf_counter()
            for _ in range(3):
                call()
            record(f"{key}.big", (time.perf_counter() - t) / 3)
        record("ppe.cold", cold_start_ppe())
        record("sieve.cold", cold_start_sieve())

    peers.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    if not args.no_optional:
        med.update(_optional_peers(n_lat, n_push, big))

    us = 1e6
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, rounds={rounds}, "
        f"latency samples={n_lat}, pushes={n_push}, {placement}, "
        f"busy_poll_us={sieve.config.busy_poll_us}, follow_caller={sieve.config.follow_caller}"
    )
    print(
        f"{'engine':<36}{'p50 us':>8}{'p99 us':>8}{'CPU us':>8}{'paused':>8}{'push/s':>10}"
        f"{'100MB s':>9}{'cold s':>8}"
    )
    rows = [
        ("raw Pipe (rate: + thread + Futures)", "pipe"),
        ("raw Pipe, both ends on one CPU", "pipe1"),
        ("ProcessPoolExecutor(1)", "ppe"),
        ("sieve-jupyter local", "sieve"),
        ("ray actor", "ray"),
        ("dask", "dask"),
    ]
    for label, key in rows:
        if f"{key}.p50" not in med:
            continue
        rate = med.get(f"{key}.rate")
        bigt = med.get(f"{key}.big")
        cold = med.get(f"{key}.cold")
        cpu = med.get(f"{key}.cpu")
        paused = med.get(f"{key}.paused")
        p99 = med.get(f"{key}.p99")
        print(
            f"{label:<36}{med[f'{key}.p50'] * us:>8.0f}"
            f"{(f'{p99 * us:.0f}' if p99 else '-'):>8}"
            f"{(f'{cpu * us:.0f}' if cpu else '-'):>8}"
            f"{(f'{paused * us:.0f}' if paused else '-'):>8}"
            f"{(f'{rate:,.0f}' if rate else '-'):>10}{(f'{bigt:.3f}' if bigt else '-'):>9}"
            f"{(f'{cold:.2f}' if cold else '-'):>8}"
        )

    ratios = {
        "run p50 / raw pipe p50 (target <= 1.5)": med["sieve.p50"] / med["pipe.p50"],
        "run p50 after a pause / raw pipe's": med["sieve.paused"] / med["pipe.paused"],
        "push rate / PPE rate (target >= 5)": med["sieve.rate"] / med["ppe.rate"],
        "push rate / Pipe + thread + Future rate (target >= 0.9)": med["sieve.rate"]
        / med["pipe.rate"],
        "PPE 100MB time / sieve 100MB time (target >= 3)": med["ppe.big"] / med["sieve.big"],
        "cold start / spawned PPE first result (target <= 3)": med["sieve.cold"] / med["ppe.cold"],
    }
    if "pipe1.p50" in med:
        ratios["run p50 / raw pipe p50 with both ends on one CPU"] = (
            med["sieve.p50"] / med["pipe1.p50"]
        )
    report(ratios, args.json, medians=med)
    fn.stop()
    big_fn.stop()


def _optional_peers(n_lat: int, n_push: int, big: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        import ray
    except ImportError:
        print("ray not installed: skipping the Ray actor (pip install ray)")
    else:
        try:
            out.update(_ray_peer(ray, n_lat, n_push))
        except Exception as exc:  # noqa: BLE001 - a busy machine can time Ray's start out
            print(f"the Ray peer failed to start ({type(exc).__name__}: {exc}): skipped")
            ray.shutdown()
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        print("dask.distributed not installed: skipping Dask (pip install distributed)")
    else:
        t = time.perf_counter()
        with (
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
        ):
            client.submit(noop, 1).result()
            out["dask.cold"] = time.perf_counter() - t
            samples = latency(
                lambda: client.submit(noop, time.perf_counter_ns()).result(), min(n_lat, 300)
            )
            out["dask.p50"], out["dask.p99"] = percentile(samples, 0.5), percentile(samples, 0.99)
    return out


def _ray_peer(ray: Any, n_lat: int, n_push: int) -> dict[str, float]:
    out: dict[str, float] = {}
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    @ray.remote
    class Actor:
        def f(self, x: Any) -> Any:
            return x

    actor = Actor.remote()
    ray.get(actor.f.remote(1))
    out["ray.cold"] = time.perf_counter() - t
    samples = latency(lambda: ray.get(actor.f.remote(1)), n_lat)
    out["ray.p50"], out["ray.p99"] = percentile(samples, 0.5), percentile(samples, 0.99)
    t = time.perf_counter()
    ray.get([actor.f.remote(i) for i in range(n_push)])
    out["ray.rate"] = n_push / (time.perf_counter() - t)
    ray.shutdown()
    return out


if __name__ == "__main__":
    main()
