"""Instructions per call, counted by callgrind: a measure of the hot paths that timing cannot give.

On a shared virtual machine a warm call's time drifts by a third from run to run, and there is
no hardware counter to read. Valgrind's callgrind counts the instructions a process executes,
the same within about 0.1% from run to run for a warm `.run()`: enough to tell whether a change
to the hot path made it cheaper, which a timing needs many alternating rounds for
(docs/performance.md, "Counting instructions"). It says nothing of cache misses or wake-ups, so
timings (`bench_core.py`) remain the measure of speed; this is the measure of work.

Each case runs in a child Python under callgrind with its worker process(es) traced too, and is
counted only around the measured loop (instrumentation is switched on and off from here with
`callgrind_control`), so start-up, imports and warm-up are left out:

- ``run``: a warm `.run()` of a function that adds two numbers, without polling (as
  `sieve.configure(busy_poll_us=0)`): the kernel's process and the worker's;
- ``push``: bursts of 1,000 pushes and their gather (all the kernel's threads, and the
  worker; under callgrind every process runs about fifty times slower, so how calls and results
  batch differs from a native run: compare this case only with itself);
- ``pipe``: the floor, a raw pickled `multiprocessing.Pipe` round trip of the same call.

Usage: ``python benchmarks/bench_instructions.py [--calls N] [--cases run,push,pipe]`` (needs
``valgrind`` and ``callgrind_control`` on the PATH; about a minute per case).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import report  # noqa: E402

CASES = ("run", "push", "pipe")


# -- the measured side (a child process under callgrind) -------------------------------------


def _add(a: int, b: int) -> int:
    return a + b


def _pipe_server(conn: Any) -> None:
    while True:
        message = conn.recv_bytes()
        if not message:
            return
        a, b = pickle.loads(message)
        conn.send_bytes(pickle.dumps(_add(a, b)))


def _measured(case: str, calls: int) -> None:
    """Warm up, say which processes to count, wait for the go, run `calls` calls, say done."""
    if case == "pipe":
        multiprocessing.set_start_method("spawn")
        conn, child = multiprocessing.Pipe()
        server = multiprocessing.Process(target=_pipe_server, args=(child,), daemon=True)
        server.start()

        def call() -> None:
            conn.send_bytes(pickle.dumps((1, 2)))
            pickle.loads(conn.recv_bytes())

        workers = [server.pid]
    else:
        import sieve_jupyter as sieve

        sieve.configure(busy_poll_us=0)

        @sieve.function(name="add")
        def add(a: int, b: int) -> int:
            return a + b

        def call() -> None:
            add.run(1, 2)

        def burst() -> None:
            futures = [add.push(i, i) for i in range(1000)]
            for future in futures:
                future.result()

        add.run(1, 2)
        workers = [worker["pid"] for worker in add.workers]
        if case == "push":
            call = burst
            calls = max(1, calls // 1000)
    for _ in range(300 if case != "push" else 3):
        call()
    print("pids", os.getpid(), *workers, flush=True)
    sys.stdin.readline()  # instrumentation goes on meanwhile
    for _ in range(calls):
        call()
    print("done", flush=True)
    sys.stdin.readline()  # ... and off, and the counts written
    if case == "pipe":
        conn.send_bytes(b"")
        server.join(10)


# -- the counting side ----------------------------------------------------------------------


def _callgrind_control(what: str, pids: list[int]) -> None:
    """Instrumentation "on" or "off", or "dump" the counts so far, in each of `pids`."""
    option = ["--dump"] if what == "dump" else ["-i", what]
    for pid in pids:
        subprocess.run(
            ["callgrind_control", *option, str(pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def _totals(out_dir: Path, pid: int) -> int | None:
    """Instructions counted in process `pid`, all its threads and dumps together (None before
    any of its counts are written)."""
    name = f"callgrind.{pid}"
    totals = []
    for path in out_dir.iterdir():
        if path.name == name or path.name.startswith((f"{name}.", f"{name}-")):
            with open(path) as fh:
                totals += [int(line.split()[1]) for line in fh if line.startswith("totals:")]
    return sum(totals) if totals else None


def _written_counts(out_dir: Path, pids: list[int]) -> dict[int, int]:
    """Each process's counts once callgrind has written them all (a dump writes one file per
    thread: the sums must hold still between two looks)."""
    deadline = time.monotonic() + 60
    seen: dict[int, int | None] = {}
    while True:
        time.sleep(0.5)
        now = {pid: _totals(out_dir, pid) for pid in pids}
        if now == seen and None not in now.values():
            return {pid: count or 0 for pid, count in now.items()}
        if time.monotonic() > deadline:
            raise RuntimeError("callgrind wrote no counts within 60 s")
        seen = now


def count(case: str, calls: int) -> dict[str, float]:
    """Instructions per call of `case`: the caller's process, its worker's, and both."""
    with tempfile.TemporaryDirectory(prefix="sieve-instructions-") as tmp:
        out_dir = Path(tmp)
        child = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                "--trace-children=yes",
                "--separate-threads=yes",
                f"--callgrind-out-file={out_dir}/callgrind.%p",
                sys.executable,
                os.path.abspath(__file__),
                "--measure",
                case,
                "--calls",
                str(calls),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            first = child.stdout.readline().split()
            if not first or first[0] != "pids":
                raise RuntimeError(f"{case}: the measured process did not start ({first})")
            kernel, *workers = (int(pid) for pid in first[1:])
            _callgrind_control("on", [kernel, *workers])
            child.stdin.write("go\n")
            child.stdin.flush()
            if child.stdout.readline().strip() != "done":
                raise RuntimeError(f"{case}: the measured process did not finish")
            pids = [kernel, *workers]
            _callgrind_control("off", pids)
            _callgrind_control("dump", pids)  # (now: a worker may be killed on its way out)
            counts = _written_counts(out_dir, pids)
            child.stdin.write("exit\n")
            child.stdin.flush()
            child.wait(120)
        finally:
            if child.poll() is None:
                child.kill()
    counted = calls if case != "push" else max(1, calls // 1000) * 1000
    caller = counts[kernel] / counted
    worker = sum(counts[pid] for pid in workers) / counted
    return {"caller": caller, "worker": worker, "total": caller + worker}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls counted per case")
    parser.add_argument("--cases", default=",".join(CASES), help="of: " + ", ".join(CASES))
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--measure", choices=CASES, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        _measured(options.measure, options.calls)
        return
    missing = [tool for tool in ("valgrind", "callgrind_control") if not shutil.which(tool)]
    if missing:
        sys.exit(f"bench_instructions needs {' and '.join(missing)} (Debian: apt install valgrind)")
    cases = [case.strip() for case in options.cases.split(",") if case.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        sys.exit(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    print(f"python {sys.version.split()[0]}, {options.calls} calls per case, under callgrind")
    print(f"{'case':<6} {'caller':>12} {'worker':>12} {'total':>12}  (instructions per call)")
    results = {}
    for case in cases:
        figures = results[case] = count(case, options.calls)
        print(
            f"{case:<6} {figures['caller']:>12,.0f} {figures['worker']:>12,.0f}"
            f" {figures['total']:>12,.0f}",
            flush=True,
        )
    ratios = {}
    if "pipe" in results and "run" in results:
        pipe = results["pipe"]
        for side in ("caller", "worker", "total"):
            ratios[f".run() {side} instructions / raw pipe's"] = results["run"][side] / pipe[side]
    report(ratios, options.json, **results)


if __name__ == "__main__":
    main()
