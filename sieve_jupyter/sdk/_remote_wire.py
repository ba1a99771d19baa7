"""What travels between a handle on a served function and its server: the one event-loop
thread that reads pushed jobs' event streams, the kept-alive clients for `run`, inputs as JSON
(files as data URLs), outputs decoded by their schema (files kept in the process's file
store), and a failed prediction's envelope turned back into an error with the server's
traceback."""

from __future__ import annotations

import asyncio
import atexit
import json
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sieve_jupyter._errors import RemoteError, RemoteTraceback, SieveError

if TYPE_CHECKING:
    from sieve_jupyter.runtime import File


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a dependency
        raise SieveError("calling a served function needs httpx. Fix: pip install httpx.") from None
    return httpx


class _Loop:
    """One event loop thread that reads every pushed job's event stream."""

    _instance: _Loop | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sieve-http", daemon=True)
        self.thread.start()
        self.clients: dict[str, Any] = {}

    @classmethod
    def get(cls) -> _Loop:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
                atexit.register(cls._instance.close)
            return cls._instance

    def client(self, base: str, headers: dict[str, str]) -> Any:
        client = self.clients.get(base)
        if client is None:
            httpx = _httpx()
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            client = self.clients[base] = httpx.AsyncClient(
                base_url=base,
                headers=headers,
                limits=limits,
                timeout=httpx.Timeout(30.0, read=None),
            )
        return client

    def close(self) -> None:
        async def shut() -> None:
            for client in self.clients.values():
                await client.aclose()

        if self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
            except Exception:  # noqa: BLE001, S110 - best effort at exit
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)


#: kept-alive clients for `run`, shared by the handles on one server (closed at exit)
_sync_clients: dict[tuple[str, str, float | None], Any] = {}
_sync_lock = threading.Lock()


def _close_sync_clients() -> None:
    with _sync_lock:
        for client in _sync_clients.values():
            client.close()
        _sync_clients.clear()


atexit.register(_close_sync_clients)


def _file_of_data_url(url: str) -> File:
    """An output file the server sent inline: kept in this process's file store, by content,
    while the File lives (many calls returning files must not fill the disk)."""
    import mimetypes

    from sieve_jupyter.runtime import File
    from sieve_jupyter.runtime._files import file_from_content
    from sieve_jupyter.spec._dataurl import decode_data_url

    media_type, data = decode_data_url(url)
    return file_from_content(File, f"output{mimetypes.guess_extension(media_type) or ''}", data)


def _is_file(schema: dict[str, Any]) -> bool:
    return schema.get("format") == "sieve-file" or any(
        isinstance(o, dict) and o.get("format") == "sieve-file" for o in schema.get("anyOf", [])
    )


def _decode(value: Any, schema: dict[str, Any]) -> Any:
    """An output as the function returned it: file outputs become `sieve.File`s."""
    from sieve_jupyter.runtime import File

    if isinstance(value, str) and _is_file(schema):
        if value.startswith("data:"):
            return _file_of_data_url(value)
        return File(url=value)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_decode(v, schema["items"]) for v in value]
    return value


def _split_traceback(logs: str) -> tuple[str, str]:
    """A failed prediction's logs as (what the function printed, the traceback the server
    appended to them)."""
    index = logs.rfind("Traceback (most recent call last):")
    return (logs[:index], logs[index:]) if index >= 0 else (logs, "")


def _printed(envelope: dict[str, Any]) -> str:
    """What a prediction printed: its logs, without the traceback a failed one's end with."""
    logs = envelope.get("logs") or ""
    return _split_traceback(logs)[0] if envelope.get("status") == "failed" else logs


def _remote_error(envelope: dict[str, Any]) -> BaseException:
    message = envelope.get("error") or "the prediction failed"
    traceback = _split_traceback(envelope.get("logs") or "")[1]
    type_name = "Exception"
    if traceback:
        last = traceback.rstrip().splitlines()[-1]
        head = last.split(":", 1)[0].strip()
        if head and " " not in head:
            type_name = head
    error = RemoteError(type_name, message, traceback)
    if traceback:
        error.__cause__ = RemoteTraceback(traceback)
        error.remote_traceback = traceback  # type: ignore[attr-defined]
    return error


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) pairs of a server-sent event stream."""
    event = "message"
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def _jsonable(value: Any) -> Any:
    """An argument as JSON, as a served function's results are (dates as ISO text, pydantic
    models and dataclasses as objects, numpy arrays as lists, ...); `sieve.File`s and paths
    become data URLs, or their URL.

    Raises:
        TypeError: a value that has no JSON form, naming its type.
    """
    from sieve_jupyter.runtime._json import to_json

    return to_json(value, _file_url)


def _file_url(file: File) -> str:
    if file.url is not None:
        return file.url
    from sieve_jupyter.spec._dataurl import file_data_url

    return file_data_url(file.path)
