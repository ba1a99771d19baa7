"""Cog's prediction API over a served bundle: sync, async + polling, webhooks, SSE, cancel,
input errors, files, several functions, and many clients at once."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from _servers import Server


def test_sync_prediction_has_cogs_envelope(main_server: Server) -> None:
    response = main_server.predict({"input": {"x1": 2, "x2": 3}})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded" and body["output"] == 6
    assert body["input"] == {"x1": 2, "x2": 3} and body["error"] is None
    assert set(body) >= {
        "id",
        "status",
        "input",
        "output",
        "error",
        "logs",
        "metrics",
        "created_at",
        "started_at",
        "completed_at",
    }
    assert body["metrics"]["predict_time"] >= 0
    assert body["created_at"].endswith("+00:00") and body["completed_at"] >= body["started_at"]


def test_each_function_has_its_route_and_reads_env_from_the_server(main_server: Server) -> None:
    body = main_server.predict({"input": {"x1": 2}}, "/functions/adder/predictions").json()
    assert body["output"] == 12  # x2's default
    assert "adding 2 10 hi" in body["logs"]
    missing = main_server.predict({"input": {}}, "/functions/nope/predictions")
    assert missing.status_code == 404 and "multiplier" in missing.json()["detail"]


def test_input_errors_are_422_naming_the_field(main_server: Server) -> None:
    wrong = main_server.predict({"input": {"x1": 2, "x2": "three"}})
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"] == ["body", "input", "x2"]
    missing = main_server.predict({"input": {"x1": 2}})
    assert missing.json()["detail"][0] == {
        "loc": ["body", "input", "x2"],
        "msg": "Field required",
        "type": "missing",
    }
    extra = main_server.predict({"input": {"x1": 2, "x2": 3, "x3": 4}})
    assert extra.json()["detail"][0]["loc"] == ["body", "input", "x3"]
    garbage = main_server.client.post(
        "/predictions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert garbage.status_code == 422 and garbage.json()["detail"][0]["loc"] == ["body"]


def test_user_exception_is_200_failed_with_traceback(main_server: Server) -> None:
    body = main_server.predict(
        {"input": {"message": "no luck"}}, "/functions/fails/predictions"
    ).json()
    assert body["status"] == "failed" and "no luck" in body["error"]
    assert "Traceback" in body["logs"] and "Unhappy: no luck" in body["logs"]
    assert "raise Unhappy(message)" in body["logs"]  # the source line, from the bundle's file


def test_async_prediction_then_polling(main_server: Server) -> None:
    accepted = main_server.predict(
        {"id": "poll-me", "input": {"seconds": 0.3, "tag": "t"}},
        "/functions/sleeper/predictions",
        headers={"prefer": "respond-async"},
    )
    assert accepted.status_code == 202
    assert accepted.json()["id"] == "poll-me"
    assert accepted.json()["status"] in ("starting", "processing")
    deadline = time.monotonic() + 60
    while True:
        body = main_server.client.get("/functions/sleeper/predictions/poll-me").json()
        if body["status"] == "succeeded":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert body["output"] == "t"
    again = main_server.predict(
        {"input": {"seconds": 0, "tag": "x"}}, "/functions/sleeper/predictions/poll-me"
    )
    assert again.status_code == 404 or again.status_code == 405  # no PUT on GET's path...
    put = main_server.client.put(
        "/functions/sleeper/predictions/poll-me", json={"input": {"seconds": 0, "tag": "x"}}
    )
    assert put.status_code == 200 and put.json()["output"] == "t"  # idempotent: the same one
    assert main_server.client.get("/predictions/no-such").status_code == 404


class _Receiver:
    """A webhook receiver on a loopback port that records what it is sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        received = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers["content-length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_start_logs_output_completed(main_server: Server) -> None:
    receiver = _Receiver()
    try:
        accepted = main_server.predict(
            {"input": {"n": 3}, "webhook": receiver.url},
            "/functions/counter/predictions",
            headers={"prefer": "respond-async"},
        )
        assert accepted.status_code == 202
        deadline = time.monotonic() + 60
        while not receiver.calls or receiver.calls[-1]["status"] != "succeeded":
            assert time.monotonic() < deadline, receiver.calls
            time.sleep(0.05)
    finally:
        receiver.close()
    first, last = receiver.calls[0], receiver.calls[-1]
    assert first["id"] == accepted.json()["id"] and first["status"] in ("starting", "processing")
    assert last["output"] == [0, 1, 4] and "item 2" in last["logs"]
    assert last["completed_at"] is not None
    statuses = [call["status"] for call in receiver.calls]
    assert statuses.count("succeeded") == 1 or statuses[-2:] == ["succeeded", "succeeded"]


def _events(response: httpx.Response) -> list[tuple[str, Any]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_generator_streams_server_sent_events(main_server: Server) -> None:
    response = main_server.predict(
        {"input": {"n": 3}},
        "/functions/counter/predictions",
        headers={"accept": "text/event-stream"},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "completed"
    outputs = [data for kind, data in events if kind == "output"]
    assert outputs == [{"chunk": 0, "index": 0}, {"chunk": 1, "index": 1}, {"chunk": 4, "index": 2}]
    assert {"source": "stdout", "data": "item 0\n"} in [d for k, d in events if k == "log"]
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["output"] == [0, 1, 4]


def test_cancel_an_async_prediction(main_server: Server) -> None:
    main_server.predict(
        {"id": "to-cancel", "input": {"seconds": 60}},
        "/functions/sleeper/predictions",
        headers={"prefer": "respond-async"},
    )
    wait_status(main_server, "/functions/sleeper/predictions/to-cancel", "processing")
    cancelled = main_server.client.post("/functions/sleeper/predictions/to-cancel/cancel")
    assert cancelled.status_code == 200 and cancelled.json() == {}
    body = wait_status(main_server, "/functions/sleeper/predictions/to-cancel", "canceled")
    assert body["output"] is None
    assert main_server.client.post("/predictions/nothing/cancel").status_code == 404


def test_a_dropped_sync_connection_cancels_its_job(main_server: Server) -> None:
    with (
        httpx.Client(base_url=main_server.url, timeout=0.5) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post(
            "/functions/sleeper/predictions", json={"id": "dropped", "input": {"seconds": 60}}
        )
    body = wait_status(main_server, "/functions/sleeper/predictions/dropped", "canceled")
    assert body["status"] == "canceled"


def test_a_long_sync_prediction_leaves_the_server_free_meanwhile(main_server: Server) -> None:
    # A sync call may be made from the event loop's own thread (a bounded direct call): one
    # that runs long must not hold up the other requests while it does.
    outcome: dict[str, httpx.Response] = {}

    def call() -> None:
        outcome["answer"] = main_server.predict(
            {"id": "long-sync", "input": {"seconds": 60}}, "/functions/sleeper/predictions"
        )

    caller = threading.Thread(target=call)
    caller.start()
    try:
        with httpx.Client(base_url=main_server.url, timeout=10) as other:
            deadline = time.monotonic() + 60
            while other.get("/functions/sleeper/predictions/long-sync").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            answer = other.post(
                "/functions/multiplier/predictions", json={"input": {"x1": 3, "x2": 4}}
            )
            assert answer.json()["output"] == 12
            assert other.get("/health-check").status_code == 200
    finally:
        main_server.client.post("/functions/sleeper/predictions/long-sync/cancel")
        caller.join(60)
    assert outcome["answer"].json()["status"] == "canceled"


def wait_status(server: Server, path: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        response = server.client.get(path)
        body = response.json() if response.status_code == 200 else {}
        if body.get("status") == status:
            return dict(body)
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def test_file_inputs_as_data_urls_and_multipart(main_server: Server) -> None:
    data = b"hello, file"
    url = "data:text/plain;base64," + base64.b64encode(data).decode()
    body = main_server.predict(
        {"input": {"document": url}}, "/functions/file-size/predictions"
    ).json()
    assert body["output"] == len(data)
    upload = main_server.client.post(
        "/functions/file-size/predictions", files={"document": ("a.txt", b"x" * 1234)}
    )
    assert upload.json()["output"] == 1234
    refused = main_server.predict(
        {"input": {"document": "/etc/passwd"}}, "/functions/file-size/predictions"
    )
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "document"
    # Sieve's push API writes a file as an object with its URL; a path is refused that way too
    as_sieve = main_server.predict(
        {"input": {"document": {"url": url}}}, "/functions/file-size/predictions"
    ).json()
    assert as_sieve["status"] == "succeeded" and as_sieve["output"] == len(data)
    for wrapped in ({"url": "/etc/passwd"}, {"url": url, "name": "a.txt"}):
        refused = main_server.predict(
            {"input": {"document": wrapped}}, "/functions/file-size/predictions"
        )
        assert refused.status_code == 422, wrapped
        assert refused.json()["detail"][0]["loc"][-1] == "document"


def test_file_outputs_inline_or_linked(main_server: Server) -> None:
    try:
        small = main_server.predict(
            {"input": {"size": 10}}, "/functions/make-file/predictions"
        ).json()
        assert (
            small["output"]
            == "data:application/octet-stream;base64," + base64.b64encode(b"x" * 10).decode()
        )
        large = main_server.predict(
            {"input": {"size": 5000}}, "/functions/make-file/predictions"
        ).json()
        link = large["output"]
        assert link.startswith(main_server.url + "/files/")
        assert httpx.get(link).content == b"x" * 5000
    finally:
        for size in (10, 5000):
            Path(f"/tmp/sieve-test-out-{size}.bin").unlink(missing_ok=True)


def test_two_workers_answer_32_concurrent_clients_correctly(main_server: Server) -> None:
    def call(i: int) -> tuple[int, Any]:
        with httpx.Client(base_url=main_server.url, timeout=60) as client:
            answers = []
            for j in range(5):
                response = client.post("/predictions", json={"input": {"x1": i, "x2": j}})
                answers.append((response.status_code, response.json()["output"]))
            return i, answers

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(32)))
    for i, answers in results:
        assert answers == [(200, i * j) for j in range(5)]
    health = main_server.health()
    assert health["functions"]["multiplier"]["ready_workers"] == 2


def test_health_and_openapi(main_server: Server) -> None:
    health = main_server.health()
    assert health["status"] in ("READY", "BUSY")
    assert health["setup"]["status"] == "succeeded"
    assert "setting up the adder" in health["setup"]["logs"]
    schema = main_server.client.get("/openapi.json").json()
    inputs = schema["components"]["schemas"]["Input"]
    assert inputs["properties"]["x1"] == {"type": "integer", "x-order": 0}
    assert "/functions/counter/predictions" in schema["paths"]
    assert schema["components"]["schemas"]["CounterOutput"]["x-cog-array-type"] == "iterator"


VANISHING = """
import os
import tempfile
from typing import Iterator

import sieve_jupyter as sieve


@sieve.function(name="vanishing")
def vanishing(text: str) -> sieve.File:
    with tempfile.TemporaryDirectory() as folder:  # (removed before the answer is encoded)
        path = os.path.join(folder, "out.txt")
        with open(path, "w") as fh:
            fh.write(text)
        return sieve.File(path)


@sieve.function(name="vanishing-items")
def vanishing_items(count: int) -> Iterator[sieve.File]:
    for index in range(count):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"item-{index}.txt")
            with open(path, "w") as fh:
                fh.write(str(index))
            yield sieve.File(path)
"""


def test_an_output_file_that_is_gone_fails_the_prediction_saying_why(tmp_path: Path) -> None:
    """A function that returns a File in a temporary folder it removes: the prediction fails
    with the reason and the fix (it used to be a 500 with no body worth reading)."""
    from sieve_jupyter.bundle import export_file

    (tmp_path / "main.py").write_text(VANISHING)
    exported = export_file(tmp_path / "main.py", tmp_path / "bundle")
    assert exported.path is not None
    server = Server(Path(exported.path))
    try:
        for path, body in (
            ("/functions/vanishing/predictions", {"input": {"text": "hi"}}),
            ("/functions/vanishing-items/predictions", {"input": {"count": 2}}),
        ):
            response = server.predict(body, path)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["status"] == "failed", answer
            assert "output file" in answer["error"] and "cannot be read" in answer["error"]
            assert "Fix: return a sieve.File that still exists" in answer["error"]
            # polled later, the prediction says the same
            polled = server.client.get(f"/predictions/{answer['id']}").json()
            assert polled["status"] == "failed" and polled["error"] == answer["error"]
        with server.client.stream(
            "POST",
            "/functions/vanishing/predictions",
            content=json.dumps({"input": {"text": "hi"}}),
            headers={"content-type": "application/json", "accept": "text/event-stream"},
        ) as stream:
            events = [line for line in stream.iter_lines() if line.startswith("data:")]
        completed = json.loads(events[-1].removeprefix("data:").strip())
        assert completed["status"] == "failed" and "cannot be read" in completed["error"]
    finally:
        assert server.stop() == 0
