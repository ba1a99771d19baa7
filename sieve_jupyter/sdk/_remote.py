"""`sieve.function.get("http://host:port[/functions/name]")`: a handle on a served function.

`run` / `push` / `map` behave as a local handle's: `push` returns a real `JobFuture` (status,
job_id, logs, outputs streamed as they come, `cancel()` that reaches the worker), a failure
raises `RemoteError` with the server's traceback, and an input that does not fit raises
`InputError` naming the field (a missing or unknown argument, `TypeError`) from the call itself,
before anything is sent: the handle checks inputs against the schema the server publishes, as the
server does. (Where that check cannot run here, the server's 422 raises the same errors, from
`run` or from the pushed job's `result()`.) A server still running its setup (503) or
with a full queue (429) is waited for, up to ``sieve.config.start_timeout``.

`run` is one HTTP request on a kept-alive connection; each `push` is a request whose answer is
Cog's server-sent events, read by one background thread for all of them.

A handle on a *deployment* (`function.get("user/name")`) is the same class with a `locate`
callable: when its server stops answering (it was replaced by a new version, or restarts) or
says it is draining, the handle asks where the name lives now and carries on there, so calls
made across a redeploy do not fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from sieve_jupyter._config import config
from sieve_jupyter._errors import (
    InputError,
    JobCancelledError,
    SetupError,
    SieveError,
)
from sieve_jupyter.manager import JobFuture
from sieve_jupyter.sdk._remote_wire import (
    _decode,
    _events,
    _httpx,
    _jsonable,
    _Loop,
    _printed,
    _remote_error,
    _sync_clients,
    _sync_lock,
)
from sieve_jupyter.sdk._script_output import print_remote, show_run_logs
from sieve_jupyter.spec import Metadata
from sieve_jupyter.spec._schema_check import SchemaCheck

__all__ = ["DRAINING_HEADER", "HttpFunction", "Locate", "RemoteSpec", "http_function"]

_TOKEN_VARIABLE = "SIEVE_SERVE_TOKEN"
#: a server that is shutting down answers new predictions 503 with this header
DRAINING_HEADER = "x-sieve-draining"
#: seconds between attempts to reach a deployment whose server is not answering (restarting)
_RECONNECT_SECONDS = 0.25

#: where a deployment's name points now: ``(url, token)``; raises when it is gone
Locate = Callable[[], "tuple[str, str | None]"]


@dataclass(frozen=True)
class RemoteSpec:
    """A served function as its handle knows it, with the fields of a `FunctionSpec` that
    describe it. `inputs` is its input schema, with the OpenAPI document's components beside
    it (where a recursive type's definitions are)."""

    name: str
    inputs: dict[str, Any]
    signature: str
    doc: str
    metadata: Metadata


class PushWatcher(Protocol):
    """Where a pushed prediction's printed output goes (the notebook layer's router): told of
    each push on the caller's thread, then of each piece of output as it arrives."""

    def pushed(self, future: JobFuture[Any]) -> None: ...

    def printed(self, future: JobFuture[Any], stream: str, text: str) -> None: ...


#: the watchers of pushed predictions; with none, their output is printed in a script
#: (`_script_output.print_remote`)
push_watchers: list[PushWatcher] = []


class _Moved(Exception):
    """The server at hand will not take the call; the handle now points elsewhere."""


class HttpFunction:
    """A function served over HTTP, called like a local handle (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        locate: Locate | None = None,
    ) -> None:
        self.timeout = timeout
        self._locate = locate
        self._described: dict[str, Any] | None = None
        self._lock = threading.RLock()
        self._aim(url, token)

    def _aim(self, url: str, token: str | None) -> None:
        """Point the handle at `url` (what it knows about the function is read again)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SieveError(
                f"{url!r} is not an http(s) URL. Fix: sieve.function.get('http://127.0.0.1:8000')."
            )
        path = parts.path.rstrip("/")
        function = None
        if "/functions/" in path:
            path, _, function = path.partition("/functions/")
            function = function.split("/")[0]
        base = f"{parts.scheme}://{parts.netloc}{path}"
        if (base, function) != (getattr(self, "base", None), getattr(self, "function", None)):
            self._described = None
        self.base = base
        self.function = function
        self.url = url
        token = token if token is not None else os.environ.get(_TOKEN_VARIABLE)
        self._headers = {"authorization": f"Bearer {token}"} if token else {}

    def _moved(self, used: str, reason: BaseException | None, deadline: float) -> bool:
        """After `reason` (a transport error, or None: the server is draining) on the server at
        `used`: whether to try again, now that the handle points where the name lives (or the
        same server is coming back). False for a plain URL, which has nowhere else to go.

        Raises:
            FunctionNotFoundError: the deployment is gone (undeployed), from `locate`.
        """
        if self._locate is None:
            return False
        with self._lock:
            if self.base != used:
                return True  # another call moved the handle meanwhile
            url, token = self._locate()
            before = self.base
            self._aim(url, token)
            if self.base != before:
                return True
        if reason is None:
            return False  # draining, and nothing newer serves the name
        import httpx

        if isinstance(reason, httpx.ConnectError) and time.monotonic() < deadline:
            # nothing was sent: the server is restarting (its engine restarted, say)
            time.sleep(_RECONNECT_SECONDS)
            return True
        return False

    # -- what it is --------------------------------------------------------------------------

    @property
    def predictions(self) -> str:
        if self.function is None:
            return "/predictions"
        return f"/functions/{self.function}/predictions"

    def _http(self) -> Any:
        key = (self.base, self._headers.get("authorization", ""), self.timeout)
        with _sync_lock:
            client = _sync_clients.get(key)
            if client is None:
                httpx = _httpx()
                client = _sync_clients[key] = httpx.Client(
                    base_url=self.base,
                    headers=self._headers,
                    timeout=httpx.Timeout(30.0, read=self.timeout),
                )
        return client

    def _describe(self) -> dict[str, Any]:
        if self._described is None:
            with self._lock:
                if self._described is None:
                    self._described = self._fetch_description()
        return self._described

    def _fetch_description(self) -> dict[str, Any]:
        from sieve_jupyter.spec._openapi import _component_name

        httpx = _httpx()
        deadline = self._deadline()
        while True:
            base = self.base
            client = self._http()
            try:
                index = self._checked(client.get("/"))
                name = self.function or index["default"]
                if name not in index.get("functions", {}):
                    known = ", ".join(index.get("functions", {})) or "none"
                    raise SieveError(
                        f"{self.base} serves no function {name!r} (functions: {known})."
                    )
                schemas = self._checked(client.get("/openapi.json"))["components"]["schemas"]
                break
            except httpx.TransportError as exc:
                if not self._moved(base, exc, deadline):
                    raise
        component = _component_name(name)
        inputs = schemas[f"{component}Input"]
        output = schemas[f"{component}Output"]
        streaming = output.get("x-cog-array-type") == "iterator"
        order = sorted(
            inputs.get("properties", {}), key=lambda k: inputs["properties"][k].get("x-order", 0)
        )
        spec = RemoteSpec(
            name=name,
            # (a recursive type's definitions are the document's components: kept beside it)
            inputs={**inputs, "components": {"schemas": schemas}},
            signature=str(inputs.get("x-sieve-signature", "")),
            doc=str(inputs.get("description", "")),
            metadata=Metadata(title=str(inputs.get("x-sieve-title", ""))),
        )
        return {
            "spec": spec,
            "check": SchemaCheck.if_available(spec.inputs),
            "order": order,
            "streaming": streaming,
            "output": output.get("items", {}) if streaming else output,
        }

    def _checked(self, response: Any) -> Any:
        if response.status_code == 401:
            raise SieveError(
                f"{self.base} wants a token (401). Fix: "
                "sieve.function.get(url, token=...) or set SIEVE_SERVE_TOKEN."
            )
        if response.status_code >= 400:
            raise SieveError(f"{self.base}: {response.status_code} {response.text[:500]}")
        return response.json()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def spec(self) -> RemoteSpec:
        """What the server says of the function: its name, input schema, signature, docstring
        and title (what `sieve.form` reads, as it reads a local handle's spec)."""
        spec: RemoteSpec = self._describe()["spec"]
        return spec

    @property
    def is_generator(self) -> bool:
        return bool(self._describe()["streaming"])

    def health(self) -> dict[str, Any]:
        """The server's health-check document."""
        result = self._http().get("/health-check").json()
        return dict(result)

    def __repr__(self) -> str:
        described = self._described  # (no request for a repr: shown once it is known)
        if described is None:
            return f"<sieve remote function {self.url}>"
        spec = described["spec"]
        return f"<sieve remote function {spec.name}{spec.signature} at {self.url}>"

    # -- calling -----------------------------------------------------------------------------

    def _input(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        described = self._describe()
        order: list[str] = described["order"]
        spec: RemoteSpec = described["spec"]
        var = spec.inputs.get("x-var-positional")
        value: dict[str, Any] = {}
        for index, arg in enumerate(args):
            if index < len(order):
                value[order[index]] = arg
            elif isinstance(var, dict):
                value.setdefault(var["name"], []).append(arg)
            else:
                raise TypeError(
                    f"{spec.name}: takes {len(order)} positional "
                    f"arguments ({', '.join(order)}) but {len(args)} were given"
                )
        for key, item in kwargs.items():
            if key in value:
                raise TypeError(f"{spec.name}: got multiple values for {key!r}")
            value[key] = item
        value = {key: _jsonable(item) for key, item in value.items()}
        check: SchemaCheck | None = described["check"]
        if check is not None:
            # (the *args travel as one list, which the schema leaves out: as the server checks)
            fixed = value
            if isinstance(var, dict) and var["name"] in value:
                fixed = {key: item for key, item in value.items() if key != var["name"]}
            problems = check.problems(fixed)
            if problems:
                first = problems[0]
                raise _input_error(spec.name, first.path, first.rule, first.message)
        return value

    def _request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"id": uuid.uuid4().hex, "input": self._input(args, kwargs)}

    def _deadline(self) -> float:
        return time.monotonic() + float(config.start_timeout)

    def _wait_or_raise(self, response: Any, deadline: float) -> float | None:
        """Seconds to wait before trying again (503 setting up, 429 full), or raise."""
        status = response.status_code
        if status == 503 and DRAINING_HEADER in response.headers:
            raise _Moved(self.base)
        retry = response.headers.get("retry-after")
        if status in (429, 503) and retry is not None and time.monotonic() < deadline:
            return min(float(retry), 1.0) if status == 503 else float(retry)
        if status == 422:
            detail = response.json().get("detail") or [{}]
            first = detail[0]
            loc = list(first.get("loc", []))
            path = tuple(loc[2:] if loc[:2] == ["body", "input"] else loc[-1:])
            rule = _RULES.get(str(first.get("type")), "")
            raise _input_error(self.name, path, rule, str(first.get("msg", "invalid")))
        if status == 503:
            raise SetupError(f"{self.base}: {response.json().get('error', 'not ready')}")
        self._checked(response)
        return None

    def _outcome(self, envelope: dict[str, Any]) -> Any:
        status = envelope.get("status")
        if status == "succeeded":
            output = envelope.get("output")
            schema = self._describe()["output"]
            if self.is_generator:
                return [_decode(item, schema) for item in output or []]
            return _decode(output, schema)
        if status == "canceled":
            raise JobCancelledError(f"job {envelope.get('id')} was cancelled")
        raise _remote_error(envelope)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function on the server and wait for its result (an iterator of outputs for
        a generator). An interrupt cancels the prediction."""
        if self.is_generator:
            future = self.push(*args, **kwargs)

            def stream() -> Iterator[Any]:
                try:
                    yield from future.stream()
                except KeyboardInterrupt:
                    future.cancel()
                    raise

            return stream()
        httpx = _httpx()
        deadline = self._deadline()
        while True:
            base = self.base
            body = self._request(args, kwargs)
            client = self._http()
            try:
                response = client.post(self.predictions, json=body)
                if response.status_code == 200:
                    envelope = response.json()
                    show_run_logs(_printed(envelope))  # (a traceback is the error's)
                    return self._outcome(envelope)
                wait = self._wait_or_raise(response, deadline)
            except KeyboardInterrupt:
                self._cancel_id(body["id"])
                raise
            except _Moved:
                if not self._moved(base, None, deadline):
                    raise self._draining_error() from None
                continue
            except httpx.TransportError as exc:
                if not self._moved(base, exc, deadline):
                    raise
                continue
            if wait is not None:
                time.sleep(wait)

    def _draining_error(self) -> SieveError:
        return SieveError(
            f"{self.base} is shutting down and takes no new predictions. Fix: "
            "call the deployment by name (sieve.function.get('user/name')), "
            "which follows it to its new version."
        )

    def _cancel_id(self, prediction_id: str) -> None:
        try:
            self._http().post(f"{self.predictions}/{prediction_id}/cancel")
        except Exception:  # noqa: BLE001, S110 - the server also cancels on the hang-up
            pass

    def push(self, *args: Any, **kwargs: Any) -> JobFuture[Any]:
        """Start a prediction and return its `JobFuture` at once.

        Raises:
            TypeError: more positional arguments than the function takes.
        """
        body = self._request(args, kwargs)
        described = self._describe()
        loop = _Loop.get()
        task: list[concurrent.futures.Future[None]] = []

        def cancel(_: JobFuture[Any]) -> None:
            if task:
                task[0].cancel()  # hangs up the stream: the server cancels the job
            asyncio.run_coroutine_threadsafe(self._acancel(loop, body["id"]), loop.loop)

        future: JobFuture[Any] = JobFuture(
            body["id"],
            described["spec"].name,
            args,
            kwargs,
            streaming=described["streaming"],
            canceller=cancel,
        )
        for watcher in push_watchers:
            watcher.pushed(future)  # (on the caller's thread, before any event can arrive)
        task.append(asyncio.run_coroutine_threadsafe(self._follow(loop, body, future), loop.loop))
        return future

    async def _acancel(self, loop: _Loop, prediction_id: str) -> None:
        try:
            await loop.client(self.base, self._headers).post(
                f"{self.predictions}/{prediction_id}/cancel"
            )
        except Exception:  # noqa: BLE001, S110
            pass

    async def _follow(self, loop: _Loop, body: dict[str, Any], future: JobFuture[Any]) -> None:
        """Read the prediction's events into its future. Until the first event arrives, a
        server that does not answer (or drains) is left for where the name lives now."""
        httpx = _httpx()
        deadline = self._deadline()
        schema = self._describe()["output"]
        running = asyncio.get_running_loop()
        try:
            while True:
                base = self.base
                client = loop.client(base, self._headers)
                headers = {"accept": "text/event-stream"}
                started = False
                try:
                    async with client.stream(
                        "POST", self.predictions, json=body, headers=headers
                    ) as response:
                        if response.status_code == 200:
                            async for event, data in _events(response.aiter_lines()):
                                started = True
                                self._apply(future, event, data, schema)
                            if not future.done():
                                future._resolve(
                                    exception=SieveError(
                                        f"{self.base}: the server closed the stream of job "
                                        f"{future.job_id} before it ended"
                                    )
                                )
                            return
                        await response.aread()
                    wait = self._wait_or_raise(response, deadline)
                except _Moved:
                    moved = await running.run_in_executor(None, self._moved, base, None, deadline)
                    if not moved:
                        raise self._draining_error() from None
                    body = await running.run_in_executor(None, self._rebody, body, future)
                    continue
                except httpx.TransportError as exc:
                    if started:
                        raise
                    moved = await running.run_in_executor(None, self._moved, base, exc, deadline)
                    if not moved:
                        raise
                    body = await running.run_in_executor(None, self._rebody, body, future)
                    continue
                if wait is not None:
                    await asyncio.sleep(wait)
        except asyncio.CancelledError:
            future._mark_cancelled()
            raise
        except BaseException as exc:  # noqa: BLE001 - the future reports it
            if not future.done():
                future._resolve(exception=exc)

    def _rebody(self, body: dict[str, Any], future: JobFuture[Any]) -> dict[str, Any]:
        """The request again, for the server the handle points at now (a new version may
        order its parameters differently); the prediction keeps its id."""
        request = self._request(future.args, future.kwargs)
        request["id"] = body["id"]
        return request

    def _apply(self, future: JobFuture[Any], event: str, data: Any, schema: dict[str, Any]) -> None:
        if event == "start":
            future._set_started(None)
        elif event == "log":
            stream, text = data.get("source", "stdout"), data.get("data", "")
            future._add_log(stream, text)
            if not push_watchers:
                print_remote(stream, text)
            for watcher in push_watchers:
                watcher.printed(future, stream, text)
        elif event == "output" and future.streaming:
            future._add_output(_decode(data.get("chunk"), schema))
        elif event == "completed":
            if future.status.value == "queued":
                future._set_started(None)
            status = data.get("status")
            if status == "canceled":
                future._mark_cancelled()
            elif status == "succeeded":
                if future.streaming:
                    future._resolve(None)
                else:
                    future._resolve(_decode(data.get("output"), schema))
            else:
                future._resolve(exception=_remote_error(data))

    def map(
        self, *iterables: Iterable[Any], order_outputs: bool = True, return_exceptions: bool = False
    ) -> Iterator[Any]:
        """Run over the inputs in parallel, as a local handle's `map`."""
        futures = [self.push(*args) for args in zip(*iterables, strict=False)]

        def results() -> Iterator[Any]:
            try:
                source = futures if order_outputs else concurrent.futures.as_completed(futures)
                for future in source:
                    try:
                        yield _result(future)  # type: ignore[arg-type]
                    except Exception as exc:
                        if not return_exceptions:
                            raise
                        yield exc
            finally:
                for future in futures:
                    if not future.done():
                        future.cancel()

        return results()


#: Cog's 422 ``detail`` types for the schema rules that are about arguments, not values
_RULES = {"missing": "required", "extra_forbidden": "additionalProperties"}


def _input_error(
    name: str, path: tuple[str | int, ...], rule: str, message: str
) -> InputError | TypeError:
    """The error a local handle raises for the same input: `TypeError` for a missing or unknown
    argument, `InputError` naming the argument for a value that does not fit (and where in it,
    when the problem is inside a list or an object)."""
    if not path:
        return InputError("input", f"{message}.", "pass the function's arguments.")
    if len(path) == 1 and rule == "required":
        return TypeError(f"{name}: missing a required argument: {path[0]!r}")
    if len(path) == 1 and rule == "additionalProperties":
        return TypeError(f"{name}: got an unexpected keyword argument {path[0]!r}")
    where = "".join(f"[{part!r}]" for part in path[1:])
    return InputError(
        str(path[0]),
        f"{message}" + (f" (at {path[0]}{where})" if where else "") + ".",
        "pass a value that fits the function's type hints.",
    )


def _result(future: JobFuture[Any]) -> Any:
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        raise JobCancelledError(f"job {future.job_id} was cancelled") from None


def http_function(url: str, **options: Any) -> HttpFunction:
    """The handle for a served function at `url` (see `HttpFunction`)."""
    return HttpFunction(url, **options)
