"""HTTP under the routes: a request read straight from the ASGI scope, JSON answers, and the
app class that hands ``POST .../predictions`` to its handler without FastAPI's per-request
machinery.

For a quick prediction, FastAPI's routing, dependency solving, middleware and telemetry hook
cost about as much CPU as everything else the server does (benchmarks/bench_serve.py), and on
a busy machine CPU turns into latency. So the prediction routes are found by one dictionary
lookup on the path and answered with plain ASGI messages; every other request goes through
FastAPI as before. The handlers are the same either way: they take an `Incoming`, which FastAPI
routes build from their `Request`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

__all__ = ["Disconnected", "FastPathApp", "Incoming", "JsonResponse", "TooLarge"]


class TooLarge(Exception):
    """The request body is over the server's limit."""


class Disconnected(Exception):
    """The client went away before its request body arrived."""


class Incoming:
    """One HTTP request: headers by lower-case name, path parameters, the body on demand."""

    __slots__ = ("_headers", "path_params", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive, path_params: Mapping[str, str]) -> None:
        self.scope = scope
        self.receive = receive
        self.path_params = path_params
        self._headers: dict[bytes, bytes] | None = None

    @classmethod
    def of(cls, request: Request) -> Incoming:
        return cls(request.scope, request.receive, request.path_params)

    def header(self, name: bytes) -> str | None:
        """The first value of header `name` (lower case), as Starlette's ``headers.get``."""
        headers = self._headers
        if headers is None:
            headers = {}
            for key, value in self.scope["headers"]:
                headers.setdefault(key, value)
            self._headers = headers
        value = headers.get(name)
        return None if value is None else value.decode("latin-1")

    def base_url(self) -> str:
        return str(Request(self.scope).base_url)

    async def body(self, limit: int) -> bytes:
        """The whole body.

        Raises:
            TooLarge: it is (or says it is) longer than `limit` bytes.
            Disconnected: the client went away first.
        """
        length = self.header(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def request(self, body: bytes) -> Request:
        """A Starlette request over the body already read (for multipart parsing)."""
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await self.receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return Request(self.scope, replay)


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


class JsonResponse(Response):
    """A JSON answer, its headers made directly (what Starlette's `Response` would send)."""

    media_type = "application/json"

    def __init__(
        self, data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status_code = status
        self.background = None
        self.body = body = dumps(data)
        raw = (
            []
            if headers is None
            else [
                (key.lower().encode("latin-1"), value.encode("latin-1"))
                for key, value in headers.items()
            ]
        )
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw


#: a prediction route's handler: the request in, the answer out
Handler = Callable[[Incoming], Awaitable[Response]]


class FastPathApp(FastAPI):
    """FastAPI, except that the POST routes in `fast_routes` (path -> path parameters) go
    straight to `fast_handler`.

    What FastAPI would add around them is kept: an exception becomes Starlette's plain
    ``500 Internal Server Error`` and is raised on to the server, which logs it.
    """

    fast_routes: dict[str, dict[str, str]]
    fast_handler: Handler | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.fast_handler
        if (
            handler is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.root_path
        ):
            path_params = self.fast_routes.get(scope["path"])
            if path_params is not None:
                try:
                    response = await handler(Incoming(scope, receive, path_params))
                except Exception:
                    await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
                    raise
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
