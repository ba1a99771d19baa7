"""Health states, tokens, limits and stopping: what a server refuses, and when."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _servers import ROOT, Server, notebook

from sieve_jupyter.bundle import export_notebook

TOKEN = "a-token-long-enough-to-mean-something"


@pytest.fixture(scope="module")
def strict_server(main_bundle: Path) -> Iterator[Server]:
    server = Server(
        main_bundle,
        "--workers",
        "1",
        "--queue-size",
        "1",
        "--max-body-bytes",
        "2000",
        env={"SIEVE_SERVE_TOKEN": TOKEN, "GREETING": "hi"},
    )
    yield server
    assert server.stop() == 0


def test_a_token_guards_every_route_but_health(strict_server: Server) -> None:
    with httpx.Client(base_url=strict_server.url) as anonymous:
        for method, path in [
            ("POST", "/predictions"),
            ("GET", "/openapi.json"),
            ("GET", "/"),
            ("GET", "/predictions/x"),
        ]:
            response = anonymous.request(method, path, json={"input": {"x1": 1, "x2": 2}})
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = anonymous.post(
            "/predictions",
            json={"input": {"x1": 1, "x2": 2}},
            headers={"authorization": "Bearer nope"},
        )
        assert wrong.status_code == 401
        assert anonymous.get("/health-check").json()["status"] in ("READY", "BUSY")
    ok = strict_server.predict({"input": {"x1": 6, "x2": 7}})
    assert ok.status_code == 200 and ok.json()["output"] == 42


def test_bodies_over_the_limit_get_413(strict_server: Server) -> None:
    big = strict_server.predict({"input": {"message": "x" * 5000}}, "/functions/fails/predictions")
    assert big.status_code == 413 and "max-body-bytes" in big.json()["detail"]


def test_a_full_queue_gets_429_with_retry_after(strict_server: Server) -> None:
    path = "/functions/sleeper/predictions"
    async_ = {"prefer": "respond-async"}
    assert (
        strict_server.predict(
            {"id": "q1", "input": {"seconds": 60}}, path, headers=async_
        ).status_code
        == 202
    )
    assert (
        strict_server.predict(
            {"id": "q2", "input": {"seconds": 60}}, path, headers=async_
        ).status_code
        == 202
    )
    full = strict_server.predict({"id": "q3", "input": {"seconds": 60}}, path, headers=async_)
    assert full.status_code == 429
    assert int(full.headers["retry-after"]) >= 1 and "queue is full" in full.json()["error"]
    for name in ("q1", "q2"):
        strict_server.client.post(f"{path}/{name}/cancel")
    deadline = time.monotonic() + 60
    while strict_server.predict({"id": "q4", "input": {"seconds": 0}}, path).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_failing_setup_is_setup_failed_and_predictions_get_503(tmp_path: Path) -> None:
    cells = [
        "import sieve_jupyter as sieve",
        """@sieve.Model(name="broken")
class Broken:
    def __setup__(self):
        print("loading weights")
        raise RuntimeError("weights are missing")
    def __predict__(self, x: int) -> int:
        return x""",
    ]
    export_notebook(notebook(cells, tmp_path / "broken.ipynb"), tmp_path / "bundle")
    server = Server(tmp_path / "bundle", wait_ready=False)
    try:
        health = server.wait_for("SETUP_FAILED")
        assert health["setup"]["status"] == "failed"
        assert "loading weights" in health["setup"]["logs"]
        assert "weights are missing" in health["setup"]["logs"]
        assert "Traceback" in health["setup"]["logs"]
        refused = server.predict({"input": {"x": 1}})
        assert refused.status_code == 503 and refused.json()["status"] == "failed"
        logs = server.health()["setup"]["logs"]
        assert logs.count("Traceback (most recent call last)") == 1, logs  # (told once)
    finally:
        assert server.stop() == 0


def test_starting_until_setup_finishes(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    cells = [
        "import os, time\nimport sieve_jupyter as sieve",
        f"""@sieve.Model(name="slow-setup")
class Slow:
    def __setup__(self):
        while not os.path.exists({str(flag)!r}):
            time.sleep(0.02)
    def __predict__(self, x: int) -> int:
        return x + 1""",
    ]
    export_notebook(notebook(cells, tmp_path / "slow.ipynb"), tmp_path / "bundle")
    server = Server(tmp_path / "bundle", wait_ready=False)
    try:
        health = server.wait_for("STARTING")
        assert health["setup"]["status"] == "starting" and health["setup"]["started_at"]
        early = server.predict({"input": {"x": 1}})
        assert early.status_code == 503 and early.headers["retry-after"] == "1"
        flag.write_text("go")
        server.wait_for("READY")
        assert server.predict({"input": {"x": 1}}).json()["output"] == 2
    finally:
        assert server.stop() == 0


def test_sigterm_lets_predictions_in_flight_finish(main_bundle: Path) -> None:
    server = Server(main_bundle, env={"GREETING": "hi"})
    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append(
                server.predict(
                    {"id": "last", "input": {"seconds": 1.0, "tag": "finished"}},
                    "/functions/sleeper/predictions",
                )
            )
        except Exception as exc:  # noqa: BLE001 - handed to the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 60
    while server.client.get("/functions/sleeper/predictions/last").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server.process.send_signal(signal.SIGTERM)
    thread.join(60)
    code = server.stop()
    assert outcome and isinstance(outcome[0], httpx.Response), (outcome, server.output)
    assert outcome[0].json()["output"] == "finished", server.output
    assert code == 0, server.output


def test_a_public_address_needs_a_token_or_insecure(main_bundle: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sieve_jupyter.cli",
            "serve",
            str(main_bundle),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "host: 0.0.0.0" in done.stderr and "SIEVE_SERVE_TOKEN" in done.stderr
    assert "--insecure" in done.stderr


def test_the_access_log_names_every_request_and_never_the_token(main_bundle: Path) -> None:
    server = Server(main_bundle, "--access-log", env={"SIEVE_SERVE_TOKEN": TOKEN, "GREETING": "hi"})
    try:
        assert server.predict({"input": {"x1": 6, "x2": 7}}).json()["output"] == 42
        assert server.predict({"input": {"x1": "six"}}).status_code == 422
        with httpx.Client(base_url=server.url) as anonymous:
            assert anonymous.post("/predictions", json={"input": {}}).status_code == 401
    finally:
        assert server.stop() == 0
    logged = [line for line in server.output.splitlines() if '"POST /predictions' in line]
    statuses = [line.split('HTTP/1.1" ')[1].split()[0] for line in logged]
    assert statuses == ["200", "422", "401"], server.output
    assert TOKEN not in server.output
