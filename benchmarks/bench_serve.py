"""Serving speed: sieve-jupyter's HTTP server against Cog, BentoML, LitServe and a bare FastAPI
endpoint, all serving the same trivial predictor (``x1 * x2``), in one run.

    python benchmarks/bench_serve.py                      # every engine, ratios at the end
    python benchmarks/bench_serve.py --skip bentoml --keep-venvs ~/.cache/sieve-bench

Each peer is installed from the package index into its own throw-away virtualenv (never into
this environment): Cog (``cog``, which brings coglet, its Rust server), BentoML and LitServe.
The bare endpoint is FastAPI + uvicorn calling the function in-process: the floor for a Python
server. Load comes from ``hey`` (a compiled client; ``apt-get install hey``), because a Python
client saturates its own CPU near 600 requests/s on a 2-vCPU machine; the client's CPU is
reported next to the server's. Measured per engine, one engine at a time:

- sequential: one kept-alive client, ``--requests`` calls after a warm-up: p50, p99; and the
  same through a minimal client of this script (one socket, the request's bytes made once, each
  answer timed to the nanosecond), because ``hey`` prints its percentiles to 0.1 ms, too coarse
  for servers that answer in 0.2-0.3 ms;
- 1 and 16 concurrent clients for ``--seconds``: requests/s, p50, p99, non-200 answers, and
  CPU seconds per 1000 requests of the server (with its workers) and of the client.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BODY_INPUT = {"x1": 6, "x2": 7}
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Engine:
    name: str
    venv_packages: list[str] = field(default_factory=list)  # empty: this environment
    path: str = "/predictions"
    body: dict[str, Any] = field(default_factory=lambda: {"input": BODY_INPUT})
    health: str = "/health-check"
    stop_signal: int = signal.SIGTERM
    expect: Any = 42
    #: more arguments for our server (`sieve-jupyter serve`)
    args: list[str] = field(default_factory=list)


ENGINES = {
    "bare-fastapi": Engine("bare-fastapi", health="/ping"),
    "sieve-jupyter": Engine("sieve-jupyter"),
    # Workers and the waiting loop poll 200 us instead of 100 before they sleep: long enough to
    # catch the next request of a client on this machine, at the cost of CPU
    # (docs/performance.md, "Serving").
    "sieve-jupyter-poll200": Engine("sieve-jupyter-poll200", args=["--busy-poll-us", "200"]),
    "cog": Engine("cog", ["cog"]),
    "litserve": Engine(
        "litserve",
        ["litserve"],
        path="/predict",
        body=BODY_INPUT,
        health="/health",
        stop_signal=signal.SIGINT,
    ),
    "bentoml": Engine(
        "bentoml",
        ["bentoml"],
        path="/predict",
        body=BODY_INPUT,
        health="/readyz",
        stop_signal=signal.SIGINT,
    ),
}

BARE = """
from fastapi import FastAPI, Request

app = FastAPI()

def multiply(x1: int, x2: int) -> int:
    return x1 * x2

@app.get("/ping")
async def ping():
    return {}

@app.post("/predictions")
async def predict(request: Request):
    body = await request.json()
    return {"status": "succeeded", "output": multiply(**body["input"])}
"""
COG = """
from cog import BasePredictor

class Predictor(BasePredictor):
    def setup(self) -> None:
        pass

    def predict(self, x1: int, x2: int) -> int:
        return x1 * x2
"""
LITSERVE = """
import sys
import litserve as ls

class Multiplier(ls.LitAPI):
    def setup(self, device):
        pass

    def decode_request(self, request):
        return request["x1"], request["x2"]

    def predict(self, x):
        return x[0] * x[1]

    def encode_response(self, output):
        return {"output": output}

if __name__ == "__main__":
    server = ls.LitServer(Multiplier(), accelerator="cpu", workers_per_device=1)
    server.run(port=int(sys.argv[1]), generate_client_file=False)
"""
BENTOML = """
import bentoml

@bentoml.service(workers=1)
class Multiplier:
    @bentoml.api
    def predict(self, x1: int, x2: int) -> int:
        return x1 * x2
"""
NOTEBOOK_CELL = """import sieve_jupyter as sieve

@sieve.function(name="multiplier")
def multiply(x1: int, x2: int) -> int:
    return x1 * x2
"""


def make_venv(where: Path, packages: list[str]) -> Path:
    python = where / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python


def version_of(python: Path, package: str) -> str:
    done = subprocess.run(
        [str(python), "-m", "pip", "show", package], capture_output=True, text=True
    )
    match = re.search(r"^Version: (.+)$", done.stdout, re.M)
    return match.group(1) if match else "?"


def start(
    engine: Engine, work: Path, venvs: Path, port: int
) -> tuple[subprocess.Popen[bytes], str]:
    folder = work / engine.name
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - the child owns it
    if engine.name == "bare-fastapi":
        (folder / "bare.py").write_text(BARE)
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "bare:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        version = f"fastapi {version_of(Path(sys.executable), 'fastapi')}"
    elif engine.name.startswith("sieve-jupyter"):
        import nbformat

        from sieve_jupyter.bundle import export_notebook

        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CELL)]
        nbformat.write(notebook, folder / "multiplier.ipynb")
        export_notebook(folder / "multiplier.ipynb", folder / "bundle")
        command = [
            sys.executable,
            "-m",
            "sieve_jupyter.cli",
            "serve",
            str(folder / "bundle"),
            "--port",
            str(port),
            *engine.args,
        ]
        import sieve_jupyter

        version = sieve_jupyter.__version__
    else:
        python = make_venv(venvs / engine.name, engine.venv_packages)
        version = version_of(python, engine.venv_packages[0])
        env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"  # coglet starts `python`
        env.pop("PYTHONPATH", None)
        if engine.name == "cog":
            (folder / "predict.py").write_text(COG)
            private_tmp = folder / "tmp"
            private_tmp.mkdir(exist_ok=True)
            # coglet keeps a folder per prediction in /tmp forever: give it its own /tmp
            inner = (
                f"mount --bind {private_tmp} /tmp && exec {python} -m cog.server.http "
                "--host 127.0.0.1"
            )
            env.update(COG_PREDICT_TYPE_STUB="predict.py:Predictor", PORT=str(port))
            command = ["unshare", "-m", "sh", "-c", inner]
        elif engine.name == "litserve":
            (folder / "server.py").write_text(LITSERVE)
            command = [str(python), "server.py", str(port)]
        else:
            (folder / "service.py").write_text(BENTOML)
            command = [
                str(python),
                "-m",
                "bentoml",
                "serve",
                "service:Multiplier",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
            ]
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=log, stderr=log, start_new_session=True
    )
    log.close()
    return process, version


def ready(engine: Engine, port: int, process: subprocess.Popen[bytes], limit: float) -> float:
    started = time.monotonic()
    url = f"http://127.0.0.1:{port}{engine.health}"
    while time.monotonic() - started < limit:
        if process.poll() is not None:
            raise RuntimeError(f"{engine.name} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = response.read()
                if response.status == 200 and (
                    engine.health != "/health-check" or json.loads(body)["status"] == "READY"
                ):
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{engine.name} was not ready within {limit} s")


def stop(engine: Engine, process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, engine.stop_signal)
        process.wait(30)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and all its descendants."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        fields = stats.get(current)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / _TICK
        stack.extend(children.get(current, []))
    return total


def hey(
    url: str,
    body: dict[str, Any],
    *,
    concurrency: int,
    seconds: float | None = None,
    requests: int | None = None,
    server_pid: int,
) -> dict[str, Any]:
    command = [
        "hey",
        "-c",
        str(concurrency),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-d",
        json.dumps(body),
    ]
    command += ["-z", f"{seconds}s"] if seconds is not None else ["-n", str(requests)]
    command.append(url)
    server_before = tree_cpu(server_pid)
    client_before = os.times()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    client_after = os.times()
    server_cpu = tree_cpu(server_pid) - server_before
    client_cpu = (client_after.children_user - client_before.children_user) + (
        client_after.children_system - client_before.children_system
    )
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total_s = float(re.search(r"Total:\s+([\d.]+) secs", out).group(1))  # type: ignore[union-attr]

    def percentile(p: int) -> float:
        match = re.search(rf"\s{p}%% in ([\d.]+) secs".replace("%%", "%"), out)
        return float(match.group(1)) * 1000 if match else float("nan")

    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    total = sum(codes.values()) or 1
    return {
        "rps": rate,
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        # (hey prints percentiles to 0.1 ms; one client's mean is the finer figure)
        "mean_ms": 1000 * total_s * concurrency / total,
        "ok_rps": rate * codes.get(200, 0) / total,
        "non_200": total - codes.get(200, 0),
        "responses": total,
        "server_cpu_ms_per_req": 1000 * server_cpu / total,
        "client_cpu_ms_per_req": 1000 * client_cpu / total,
    }


def probe(engine: Engine, port: int, requests: int) -> dict[str, float]:
    """Sequential latency to the microsecond: one kept-alive HTTP/1.1 connection, the request's
    bytes made once, each answer read whole (``Content-Length`` or chunked) before the next
    request goes out. What it adds per request (a send, a few reads, a header scan) is the same
    for every engine. Only answers with status 200 are timed; the others are counted (Cog
    answers ``409`` to a request that comes before it has freed its one slot)."""
    body = json.dumps(engine.body).encode()
    request = (
        f"POST {engine.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    times: list[int] = []
    refused = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(requests):
            start = time.perf_counter_ns()
            sock.sendall(request)
            status = _read_answer(sock)
            elapsed = time.perf_counter_ns() - start
            if status == 200:
                times.append(elapsed)
            else:
                refused += 1
    if not times:
        raise RuntimeError(f"{engine.name} answered no probe request with 200")
    times.sort()
    return {
        "p50_us": times[len(times) // 2] / 1000,
        "p90_us": times[len(times) * 9 // 10] / 1000,
        "p99_us": times[len(times) * 99 // 100] / 1000,
        "mean_us": sum(times) / len(times) / 1000,
        "non_200": refused,
    }


def _read_answer(sock: socket.socket) -> int:
    """Read one whole HTTP/1.1 answer from `sock`; returns its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            rest += sock.recv(65536)
        return status
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return status


def check_answer(engine: Engine, port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{engine.path}",
        data=json.dumps(engine.body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    output = answer.get("output", answer) if isinstance(answer, dict) else answer
    if output != engine.expect:
        raise RuntimeError(f"{engine.name} answered {answer!r}")


def measure(engine: Engine, work: Path, venvs: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    process, version = start(engine, work, venvs, port)
    try:
        cold = ready(engine, port, process, limit=180)
        check_answer(engine, port)
        url = f"http://127.0.0.1:{port}{engine.path}"
        hey(url, engine.body, concurrency=1, requests=300, server_pid=process.pid)  # warm-up
        result: dict[str, Any] = {"engine": engine.name, "version": version, "cold_s": cold}
        result["sequential"] = hey(
            url, engine.body, concurrency=1, requests=args.requests, server_pid=process.pid
        )
        result["probe"] = probe(engine, port, args.requests)
        for clients in (1, 16):
            result[f"c{clients}"] = hey(
                url, engine.body, concurrency=clients, seconds=args.seconds, server_pid=process.pid
            )
        return result
    finally:
        stop(engine, process)


def report(results: list[dict[str, Any]]) -> None:
    print(
        "\n| engine | version | seq p50 | seq mean | seq p99 | probe p50 | probe p99 "
        "| probe non-200 | 1 client req/s | 16 clients req/s "
        "(200s only) | non-200 at 16 | server CPU ms/req | client CPU ms/req | cold start |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        s, c1, c16, pr = r["sequential"], r["c1"], r["c16"], r["probe"]
        print(
            f"| {r['engine']} | {r['version']} | {s['p50_ms']:.2f} ms | {s['mean_ms']:.3f} ms "
            f"| {s['p99_ms']:.2f} ms | {pr['p50_us']:.0f} µs | {pr['p99_us']:.0f} µs "
            f"| {pr['non_200']:,} "
            f"| {c1['rps']:,.0f} | {c16['rps']:,.0f} ({c16['ok_rps']:,.0f}) | "
            f"{c16['non_200']:,} of {c16['responses']:,} | "
            f"{c16['server_cpu_ms_per_req']:.2f} | {c16['client_cpu_ms_per_req']:.2f} | "
            f"{r['cold_s']:.1f} s |"
        )
    ours = next((r for r in results if r["engine"] == "sieve-jupyter"), None)
    if ours is None:
        return
    print(
        "\n| ratio, same run | p50 (sequential, hey) | mean (sequential, hey) | p50 (probe) "
        "| 16-client throughput (200s) |"
    )
    print("|---|---:|---:|---:|---:|")
    variants = [r for r in results if r["engine"].startswith("sieve-jupyter-")]
    pairs = [(ours, r) for r in results if not r["engine"].startswith("sieve-jupyter")]
    pairs += [(v, r) for v in variants for r in results if r["engine"] == "bare-fastapi"]
    for mine, r in pairs:
        p50 = mine["sequential"]["p50_ms"] / r["sequential"]["p50_ms"]
        mean = mine["sequential"]["mean_ms"] / r["sequential"]["mean_ms"]
        fine = mine["probe"]["p50_us"] / r["probe"]["p50_us"]
        rate = mine["c16"]["ok_rps"] / max(r["c16"]["ok_rps"], 1e-9)
        print(
            f"| {mine['engine']} vs {r['engine']} | {p50:.2f}x | {mean:.2f}x | {fine:.2f}x "
            f"| {rate:.2f}x |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="sequential requests")
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrent run")
    parser.add_argument("--rounds", type=int, default=1, help="alternate engines this often")
    parser.add_argument("--skip", default="", help="engines to leave out, comma-separated")
    parser.add_argument("--keep-venvs", help="keep the peers' virtualenvs here (reused)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        print("bench_serve needs `hey` (apt-get install hey).", file=sys.stderr)
        return 2
    skip = {s for s in args.skip.split(",") if s}
    work = Path(tempfile.mkdtemp(prefix="sieve-bench-serve-", dir="/var/tmp"))
    venvs = Path(args.keep_venvs).expanduser() if args.keep_venvs else work / "venvs"
    results: list[dict[str, Any]] = []
    try:
        for _ in range(args.rounds):
            for name, engine in ENGINES.items():
                if name in skip:
                    continue
                print(f"measuring {name} ...", flush=True)
                try:
                    results.append(measure(engine, work, venvs, args))
                except Exception as exc:  # noqa: BLE001 - one broken peer must not end the run
                    print(f"  {name} failed: {exc}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    merged = _median_by_engine(results)
    report(merged)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _median_by_engine(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per engine: the round with the median sequential p50 (the probe's)."""
    rows = []
    for name in dict.fromkeys(r["engine"] for r in results):
        runs = sorted(
            (r for r in results if r["engine"] == name), key=lambda r: r["probe"]["p50_us"]
        )
        rows.append(runs[len(runs) // 2])
    return rows


if __name__ == "__main__":
    sys.exit(main())
