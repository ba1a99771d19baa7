"""The HTTP API: Cog's prediction API over a `Service`, as a FastAPI app.

Routes take the raw request (no FastAPI body models) so the envelope, the 422 detail and the
status codes are exactly Cog's, and so a quick call pays for nothing it does not use: the
prediction routes skip FastAPI's per-request machinery (`_http.FastPathApp`), and a sync
prediction that finds a worker idle is answered on the event loop's thread when it is quick
(`Service.run`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NamedTuple

from fastapi import Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.types import Receive

from sieve_jupyter.manager import JobFuture
from sieve_jupyter.sdk._remote import DRAINING_HEADER
from sieve_jupyter.serve._http import (
    Disconnected,
    FastPathApp,
    Incoming,
    JsonResponse,
    TooLarge,
)
from sieve_jupyter.serve._io import InputError422, Uploads, output_encoder, to_files
from sieve_jupyter.serve._predictions import TERMINAL, Prediction
from sieve_jupyter.serve._service import Served, Service
from sieve_jupyter.serve._webhooks import WebhookSender
from sieve_jupyter.spec import WEBHOOK_EVENTS, openapi_document

__all__ = ["create_app"]

#: bodies above this are submitted from a thread (pickling a large input must not stall the
#: event loop)
_LARGE_BODY = 256 * 1024
#: seconds a sync prediction runs before its connection is watched for a hang-up
_LISTEN_AFTER = 0.05


_json = JsonResponse


class _Accepted(NamedTuple):
    """A prediction request that passed every check and holds a place in the queue."""

    prediction_id: str
    value: Any  # the input as received (the envelope's `input`)
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    webhook: str | None
    webhook_events: frozenset[str]


def _prediction_id(given: Any, path_id: str | None) -> str:
    """The new prediction's id: the body's `id`, the URL's, or a fresh one."""
    prediction_id = given or path_id or secrets.token_hex(13)
    if path_id is not None and prediction_id != path_id:
        raise InputError422(
            [
                {
                    "loc": ["body", "id"],
                    "type": "value_error",
                    "msg": "prediction ID must match the ID supplied in the URL",
                }
            ]
        )
    if not isinstance(prediction_id, str):
        raise InputError422(
            [{"loc": ["body", "id"], "msg": "must be a string", "type": "type_error"}]
        )
    return prediction_id


def _sse_event(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Api:
    """The route handlers, bound to one service."""

    def __init__(self, service: Service, shutdown: Callable[[], None] | None) -> None:
        self.service = service
        self.settings = service.settings
        self.shutdown_callback = shutdown
        self.openapi = openapi_document(
            [s.spec for s in service.functions.values()], default=service.default
        )
        token = self.settings.token
        self._expected = f"Bearer {token}".encode() if token else None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: Any = None  # an httpx.AsyncClient for webhooks, made on first use
        from sieve_jupyter.serve._io import FileStore

        self.files = FileStore(self.settings.keep_seconds)
        self.uploads = _UploadRoot()

    # -- guards ------------------------------------------------------------------------------

    def refused_request(self, request: Request) -> Response | None:
        return self.refused(request.headers.get("authorization"))

    def refused(self, authorization: str | None) -> Response | None:
        """401 unless `authorization` (the header) has the bearer token, when the server has
        one."""
        expected = self._expected
        if expected is None:
            return None
        if hmac.compare_digest((authorization or "").encode(), expected):
            return None
        return _json(
            {
                "detail": "Missing or wrong bearer token. Send `Authorization: Bearer "
                "<token>` with the server's SIEVE_SERVE_TOKEN."
            },
            401,
            {"WWW-Authenticate": "Bearer"},
        )

    def too_large(self) -> Response:
        return _json(
            {
                "detail": f"The request body is larger than this server accepts "
                f"({self.settings.max_body_bytes} bytes). Fix: send a URL "
                "instead of inline data, or start the server with a larger "
                "--max-body-bytes."
            },
            413,
        )

    # -- routes ------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        if (refused := self.refused_request(request)) is not None:
            return refused
        return _json(
            {
                "docs_url": None,
                "openapi_url": "/openapi.json",
                "shutdown_url": "/shutdown",
                "healthcheck_url": "/health-check",
                "predictions_url": "/predictions",
                "predictions_idempotent_url": "/predictions/{prediction_id}",
                "predictions_cancel_url": "/predictions/{prediction_id}/cancel",
                "functions": {
                    name: f"/functions/{name}/predictions" for name in self.service.functions
                },
                "default": self.service.default,
            }
        )

    async def health(self, request: Request) -> Response:
        return _json(self.service.health())

    async def openapi_json(self, request: Request) -> Response:
        if (refused := self.refused_request(request)) is not None:
            return refused
        return _json(self.openapi)

    async def shutdown(self, request: Request) -> Response:
        if (refused := self.refused_request(request)) is not None:
            return refused
        if self.shutdown_callback is not None:
            asyncio.get_running_loop().call_soon(self.shutdown_callback)
        return _json({})

    async def file(self, request: Request) -> Response:
        if (refused := self.refused_request(request)) is not None:
            return refused
        path = self.files.path(request.path_params["file_id"])
        if path is None:
            return _json({"detail": "No such file (or it expired)."}, 404)
        return FileResponse(path)

    def served(self, request: Incoming) -> Served | None:
        name = request.path_params.get("name")
        return self.service.functions.get(name if name is not None else self.service.default)

    def no_function(self, request: Incoming) -> Response:
        names = ", ".join(self.service.functions)
        return _json(
            {
                "detail": f"No function {request.path_params.get('name')!r} here "
                f"(functions: {names})."
            },
            404,
        )

    async def get_prediction(self, request: Request) -> Response:
        if (refused := self.refused_request(request)) is not None:
            return refused
        prediction = self.service.predictions.get(request.path_params["prediction_id"])
        if prediction is None:
            return _json({"detail": "No such prediction (or it finished long ago)."}, 404)
        return _json(prediction.envelope())

    async def cancel(self, request: Request) -> Response:
        if (refused := self.refused_request(request)) is not None:
            return refused
        prediction = self.service.predictions.get(request.path_params["prediction_id"])
        if prediction is None:
            return _json({}, 404)
        prediction.cancel()
        return _json({})

    async def create_route(self, request: Request) -> Response:
        return await self.create(Incoming.of(request))

    async def create(self, request: Incoming) -> Response:
        """A new prediction (`POST /predictions`, `PUT /predictions/{id}`, the same under
        `/functions/{name}`): refused, read and checked before anything runs, then started and
        answered the way the request asks (sync, `Prefer: respond-async`, event stream)."""
        if (refused := self.refused(request.header(b"authorization"))) is not None:
            return refused
        served = self.served(request)
        if served is None:
            return self.no_function(request)
        path_id = request.path_params.get("prediction_id")
        existing = self.service.predictions.get(path_id) if path_id is not None else None
        if existing is not None:  # an idempotent retry: the prediction as it is now
            return _json(existing.envelope(), 200 if existing.status in TERMINAL else 202)
        try:
            body = await request.body(self.settings.max_body_bytes)
        except TooLarge:
            return self.too_large()
        except Disconnected:
            return _json({}, 499)  # (nobody is there to read it)
        uploads = Uploads(self.uploads)
        accepted = await self._accept(request, body, served, uploads, path_id)
        if isinstance(accepted, Response):
            uploads.remove()
            return accepted
        return await self._start(request, served, accepted, uploads, large=len(body) > _LARGE_BODY)

    async def _accept(
        self, request: Incoming, body: bytes, served: Served, uploads: Uploads, path_id: str | None
    ) -> _Accepted | Response:
        """The request's prediction, checked and admitted to the queue; or the answer that
        refuses it (422, 409, 429, 503)."""
        try:
            request_data, uploaded = await self._parse(request, body, served, uploads)
            prediction_id = _prediction_id(request_data.get("id"), path_id)
            webhook, events = self._webhook(request_data)
            value = served.plan.check(request_data.get("input"))
            kwargs_input = to_files(
                served.plan, served.plan.decode_binary(value), uploads, uploaded
            )
        except InputError422 as exc:
            return _json({"detail": exc.detail}, 422)
        if self.service.predictions.get(prediction_id) is not None:
            return _json(
                {
                    "detail": f"A prediction with id {prediction_id!r} exists. Fix: a "
                    "new id, or PUT /predictions/{id} to get it back."
                },
                409,
            )
        why = self.service.admit(served)
        if why is not None:
            return self._not_admitted(served, why)
        args, kwargs = served.plan.call(kwargs_input)
        return _Accepted(prediction_id, value, args, kwargs, webhook, events)

    async def _start(
        self,
        request: Incoming,
        served: Served,
        accepted: _Accepted,
        uploads: Uploads,
        *,
        large: bool,
    ) -> Response:
        """Start an admitted prediction's job and answer as the request asks."""
        # Everything but the call itself is ready before it is made: once the job is out, a
        # quick worker answers at once, and its reply should find this thread waiting.
        streaming = "text/event-stream" in (request.header(b"accept") or "")
        sync = not streaming and request.header(b"prefer") != "respond-async"
        webhook = accepted.webhook
        encode = output_encoder(self.settings.inline_file_bytes, self.files, request.base_url)
        loop = asyncio.get_running_loop()
        created = time.time()
        args, kwargs = accepted.args, accepted.kwargs
        try:
            if large:
                # (pickling a large input must not stall the event loop)
                future = await loop.run_in_executor(None, self.service.submit, served, args, kwargs)
            elif sync and webhook is None and served.inflight == 1:
                # Nothing else of this function is in flight: a quick call is answered on
                # this thread (a webhook's `start` must be sent before the call ends).
                future = self.service.run(served, args, kwargs)
            else:
                future = self.service.submit(served, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - e.g. the function was stopped
            self.service.release(served, None)
            uploads.remove()
            return _json({"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, 503)
        waiter: asyncio.Future[bool] | None = None
        if sync and not future.done():
            waiter = loop.create_future()
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(_settle, waiter))
        future.add_done_callback(lambda _: self._done(served, future, uploads))
        prediction = Prediction(
            accepted.prediction_id,
            served.name,
            accepted.value,
            future,
            created_at=created,
            webhook=webhook,
            webhook_events=accepted.webhook_events,
            encode=encode,
        )
        self.service.predictions.add(prediction)
        if streaming:
            return StreamingResponse(
                self._stream(prediction, future),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        if webhook is not None:
            self._background(self._webhooks(prediction, future, prediction.start_envelope()))
        if not sync:
            return _json(prediction.envelope(), 202)
        if waiter is not None and not await self._wait(request.receive, future, waiter):
            return _json(prediction.envelope(), 499)  # (nobody is there to read it)
        return _json(prediction.envelope())

    # -- helpers -----------------------------------------------------------------------------

    async def _parse(
        self, request: Incoming, body: bytes, served: Served, uploads: Uploads
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        content_type = request.header(b"content-type") or ""
        if content_type.startswith("multipart/form-data"):
            return await self._parse_multipart(request.request(body), served, uploads)
        if not body:
            return {}, {}
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise InputError422(
                [{"loc": ["body"], "msg": f"the body is not JSON ({exc})", "type": "json_invalid"}]
            ) from None
        if not isinstance(data, dict):
            raise InputError422(
                [
                    {
                        "loc": ["body"],
                        "msg": "the body must be a JSON object with `input`",
                        "type": "type_error",
                    }
                ]
            )
        return data, {}

    async def _parse_multipart(
        self, request: Request, served: Served, uploads: Uploads
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        from starlette.datastructures import UploadFile

        from sieve_jupyter.runtime import File
        from sieve_jupyter.serve._io import _FILE_TYPES

        data: dict[str, Any] = {}
        inputs: dict[str, Any] = {}
        uploaded: dict[str, Any] = {}
        async with request.form(max_part_size=self.settings.max_body_bytes) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    type_name = served.plan.files.get(key, ("File", False))[0]
                    content = await value.read()
                    path = uploads.save(content, value.content_type or "", value.filename or "")
                    uploaded[key] = _FILE_TYPES.get(type_name, File)(path)
                    inputs[key] = f"upload:{value.filename or key}"  # (a string, to validate)
                elif key in ("id", "webhook"):
                    data[key] = value
                elif key == "input":
                    try:
                        parsed = json.loads(value)
                    except ValueError:
                        parsed = None
                    if not isinstance(parsed, dict):
                        raise InputError422(
                            [
                                {
                                    "loc": ["body", "input"],
                                    "type": "json_invalid",
                                    "msg": "the `input` field must be a JSON object",
                                }
                            ]
                        )
                    inputs.update(parsed)
                else:
                    try:
                        inputs[key] = json.loads(value)
                    except ValueError:
                        inputs[key] = value
        data["input"] = inputs
        return data, uploaded

    def _webhook(self, data: dict[str, Any]) -> tuple[str | None, frozenset[str]]:
        webhook = data.get("webhook")
        if webhook is None:
            return None, frozenset()
        if not isinstance(webhook, str) or not webhook.startswith(("http://", "https://")):
            raise InputError422(
                [
                    {
                        "loc": ["body", "webhook"],
                        "type": "value_error",
                        "msg": "must be an http(s) URL",
                    }
                ]
            )
        events = data.get("webhook_events_filter") or list(WEBHOOK_EVENTS)
        if not isinstance(events, list) or any(e not in WEBHOOK_EVENTS for e in events):
            raise InputError422(
                [
                    {
                        "loc": ["body", "webhook_events_filter"],
                        "type": "value_error",
                        "msg": f"must be a list of {', '.join(WEBHOOK_EVENTS)}",
                    }
                ]
            )
        return webhook, frozenset(events)

    def _not_admitted(self, served: Served, why: str) -> Response:
        if why == "full":
            seconds = self.service.retry_after(served)
            return _json(
                {
                    "status": "failed",
                    "error": f"{served.name}: the queue is full "
                    f"({served.capacity} predictions). Retry after {seconds} s.",
                },
                429,
                {"Retry-After": str(seconds)},
            )
        if why == "draining":
            return _json(
                {
                    "status": "failed",
                    "error": "This server is shutting down: it "
                    "takes no new predictions and finishes those in flight. A "
                    "deployment's new version answers at the deployment's current "
                    "address (sieve-jupyter deployments).",
                },
                503,
                {DRAINING_HEADER: "1"},
            )
        health = served.status()
        if health == "STARTING":
            message = f"{served.name}: setup has not finished yet. Retry shortly."
            return _json({"status": "failed", "error": message}, 503, {"Retry-After": "1"})
        logs = "".join(served.setup_logs).strip().splitlines()
        tail = f" ({logs[-1]})" if logs else ""
        return _json(
            {
                "status": "failed",
                "error": f"{served.name} cannot run: {health}"
                f"{tail}. GET /health-check has the setup logs.",
            },
            503,
        )

    def _done(self, served: Served, future: JobFuture[Any], uploads: Uploads) -> None:
        self.service.release(served, future)
        uploads.remove()

    async def _wait(
        self, receive: Receive, future: JobFuture[Any], waiter: asyncio.Future[bool]
    ) -> bool:
        """Wait for the job; if the client goes away first, cancel it and return False.

        A quick job is done before a hang-up could matter, so the connection is listened to
        only after a moment (a listener is a task of its own, which a quick call need not pay
        for)."""
        loop = asyncio.get_running_loop()
        listener: list[asyncio.Task[None]] = []

        def listen() -> None:
            async def hang_up() -> None:
                await _disconnect(receive)
                if not waiter.done():
                    waiter.set_result(False)

            listener.append(loop.create_task(hang_up()))

        timer = loop.call_later(_LISTEN_AFTER, listen)
        try:
            finished = await waiter
        finally:
            timer.cancel()
            for task in listener:
                task.cancel()
        if not finished:
            future.cancel()
        return finished

    def _background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _changes(self, future: JobFuture[Any]) -> AsyncIterator[None]:
        """Yield each time a prediction's job may have changed (status, logs, outputs), and
        once more after it is done."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def poke(*_: Any) -> None:
            loop.call_soon_threadsafe(changed.set)

        self.service.watch(future.job_id, poke)
        future.add_done_callback(poke)
        try:
            while True:
                changed.clear()
                # (read before the yield: a job that ends while the caller looks is seen on
                # the next round, never skipped -- the caller would miss its end)
                done = future.done()
                yield
                if done:
                    return
                await changed.wait()
        finally:
            self.service.unwatch(future.job_id)

    async def _stream(self, prediction: Prediction, future: JobFuture[Any]) -> AsyncIterator[bytes]:
        """Cog's server-sent events: start, output, log, completed (`future`: the prediction's
        job, which the prediction lets go of once it is done)."""
        started = False
        sent_logs = sent_outputs = 0
        try:
            async for _ in self._changes(future):
                if not started and prediction.status != "starting":
                    started = True
                    yield _sse_event("start", {"id": prediction.id, "status": "processing"})
                logs = list(future.logs)
                for stream, text in logs[sent_logs:]:
                    yield _sse_event("log", {"source": stream, "data": text})
                sent_logs = len(logs)
                if future.streaming:
                    outputs = list(future.outputs)
                    for index in range(sent_outputs, len(outputs)):
                        chunk = prediction.encode_item(outputs[index])
                        yield _sse_event("output", {"chunk": chunk, "index": index})
                    sent_outputs = len(outputs)
                if future.done():
                    output = None if future.streaming else prediction.output()
                    if not future.streaming and prediction.status == "succeeded":
                        yield _sse_event("output", {"chunk": output, "index": 0})
                    yield _sse_event("completed", prediction.envelope())
                    return
        finally:
            if not future.done():
                future.cancel()  # the client went away: nobody wants the result

    async def _webhooks(
        self, prediction: Prediction, future: JobFuture[Any], start: dict[str, Any]
    ) -> None:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=10.0)
        sender = WebhookSender(self._http, prediction, {"user-agent": "sieve-jupyter"})
        sent_logs = sent_outputs = 0
        await sender.send("start", start)
        async for _ in self._changes(future):
            if future.done():
                break
            if len(future.logs) > sent_logs:
                sent_logs = len(future.logs)
                await sender.send("logs")
            if len(future.outputs) > sent_outputs:
                sent_outputs = len(future.outputs)
                await sender.send("output")
        prediction.output()  # (first: an output that cannot be encoded fails the prediction)
        if prediction.status == "succeeded":
            await sender.send("output")
        await sender.send("completed")

    async def close(self) -> None:
        for task in list(self._tasks):
            try:
                await asyncio.wait_for(asyncio.shield(task), 5.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001, S110
                task.cancel()
        if self._http is not None:
            await self._http.aclose()
        self.uploads.remove()


class _UploadRoot:
    """The server's private folder for uploaded input files, made when the first one comes."""

    def __init__(self) -> None:
        self._path: Path | None = None

    def __call__(self) -> Path:
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix="sieve-serve-"))
        return self._path

    def remove(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None


def _settle(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


async def _disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def create_app(service: Service, *, shutdown: Callable[[], None] | None = None) -> FastPathApp:
    """The FastAPI app answering for `service` (Cog's routes, per function and default)."""
    api = _Api(service, shutdown)
    app = FastPathApp(title="sieve-jupyter", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.api = api
    # The hot routes, found without FastAPI's routing (they are registered below as well, so
    # a request the fast path does not take is answered the same way).
    app.fast_routes = {"/predictions": {}}
    for name in service.functions:
        app.fast_routes[f"/functions/{name}/predictions"] = {"name": name}
    app.fast_handler = api.create
    add = app.add_api_route
    add("/", api.index, methods=["GET"])
    add("/health-check", api.health, methods=["GET"])
    add("/openapi.json", api.openapi_json, methods=["GET"])
    add("/shutdown", api.shutdown, methods=["POST"])
    add("/files/{file_id}", api.file, methods=["GET"])
    for base in ("/predictions", "/functions/{name}/predictions"):
        add(base, api.create_route, methods=["POST"])
        add(base + "/{prediction_id}", api.create_route, methods=["PUT"])
        add(base + "/{prediction_id}", api.get_prediction, methods=["GET"])
        add(base + "/{prediction_id}/cancel", api.cancel, methods=["POST"])
    return app
