"""Running a server: a bundle in the foreground (``sieve-jupyter serve``, a container's command)
or a kernel's functions on a background thread (``%sieve serve NAME``).

The listening socket is bound before anything else, so the port (0 picks a free one) is known
and reported at once: on stdout, and in ``--port-file`` (written atomically) for a supervisor;
or it is inherited ready-made (``--fd``), so whoever chose the port never loses it to another
process in between. SIGTERM and SIGINT *drain* the server: new predictions get 503 (saying it
is shutting down, so a deployment's clients move to its new version), the ones in flight finish
(up to a grace period), then it stops listening and stops the workers; the exit code is 0. A
second signal stops at once.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sieve_jupyter.serve._settings import ServeSettings

if TYPE_CHECKING:
    from sieve_jupyter.serve._service import Service

__all__ = [
    "BackgroundServer",
    "bind",
    "inherited",
    "serve_bundle",
    "serve_functions",
    "serve_modelyaml",
]

#: seconds a stopping server waits for the predictions in flight
GRACE_SECONDS = 30.0
#: finished jobs the manager of a process that only serves remembers
#: (see `_configure_server_process`)
SERVER_JOB_HISTORY = 100


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from sieve_jupyter._errors import ConfigurationError

        raise ConfigurationError(
            f"port: cannot listen on {host}:{port} ({exc.strerror}). Fix: another --port, or "
            "--port 0 to pick a free one."
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def inherited(fd: int) -> socket.socket:
    """The listening socket this process was given as file descriptor `fd`.

    Raises:
        ConfigurationError: `fd` is not a listening TCP socket.
    """
    from sieve_jupyter._errors import ConfigurationError

    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigurationError(
            f"fd: {fd} is not an open socket ({exc.strerror}). Fix: pass the number of a "
            "listening socket this process inherited, or use --port instead."
        ) from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()
        raise ConfigurationError(
            f"fd: {fd} is not a listening TCP socket. Fix: bind and listen before passing it, "
            "or use --port instead."
        )
    return sock


def _asyncio_run(main: Any) -> None:
    """Run `main` on uvloop where it is installed (the serve extra brings it): on the plain
    asyncio loop each answer on a kept-alive connection waited ~40 ms here."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _write_port_file(path: str, port: int) -> None:
    target = Path(path)
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    staging.write_text(f"{port}\n")
    staging.replace(target)


def _uvicorn_server(
    app: Any, settings: ServeSettings, drain: Callable[[], None] | None = None
) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        draining = False

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            # uvicorn re-raises SIGTERM after a graceful stop, so the process would end
            # "killed by SIGTERM"; a stop that went as planned exits 0 instead.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.on_signal) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def on_signal(self, sig: int, frame: Any) -> None:
            if drain is not None and not self.draining and not self.should_exit:
                self.draining = True
                drain()
                return
            self.handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=settings.access_log,
        lifespan="off",
        timeout_graceful_shutdown=int(GRACE_SECONDS),
        server_header=False,
        timeout_keep_alive=30,
    )
    if settings.access_log:
        # uvicorn gives its access logger the server's level, at which its lines (INFO) would
        # all be dropped: the access log has a level of its own.
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return Server(config)


async def _run(service: Any, settings: ServeSettings, sock: socket.socket, announce: str) -> None:
    from sieve_jupyter.serve._app import create_app

    server: Any = None
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def drain_then_stop() -> None:
        service.drain()
        deadline = loop.time() + GRACE_SECONDS
        while service.inflight() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        server.should_exit = True

    def drain() -> None:
        # (from a signal handler, or a route: either way on this loop's thread)
        task = loop.create_task(drain_then_stop())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def shutdown() -> None:
        if not server.draining:
            server.draining = True
            drain()

    app = create_app(service, shutdown=shutdown)
    server = _uvicorn_server(app, settings, drain)
    service.start()
    # What exists now (FastAPI, pydantic, the manager) lives as long as the server: keep it
    # out of the collector's full passes, whose cost grows with it and lands on whichever
    # request happens to trigger one.
    gc.collect()
    gc.freeze()
    port = sock.getsockname()[1]
    if settings.port_file:
        _write_port_file(settings.port_file, port)
    print(announce.format(port=port), flush=True)
    try:
        await server.serve(sockets=[sock])
    finally:
        await app.state.api.close()
        service.stop()


def serve_bundle(
    path: str | os.PathLike[str],
    settings: ServeSettings,
    prepare: Callable[[Service], None] | None = None,
) -> int:
    """Serve the bundle at `path` until SIGTERM/SIGINT (or POST /shutdown). Returns 0.

    Args:
        path: the bundle's folder.
        settings: where to listen, limits, token.
        prepare: called with the service before its workers start (a deployment's runner
            names it and logs its workers' output).

    Raises:
        SpecError: the bundle is invalid (the message names the line of sieve.yaml).
        ConfigurationError: a bad setting, or the port is taken.
    """
    from sieve_jupyter.bundle import read_bundle
    from sieve_jupyter.serve._service import Service

    settings.validate()
    _configure_server_process(settings)
    bundle = read_bundle(path)
    if settings.backend == "ray":
        _ship_to_ray(bundle.src)
    service = Service(settings)
    service.add_bundle(bundle)
    if prepare is not None:
        prepare(service)
    return _serve_foreground(service, settings)


def serve_modelyaml(
    path: str | os.PathLike[str], settings: ServeSettings, *, name: str | None = None
) -> int:
    """Serve the models of a model.yaml until SIGTERM/SIGINT (or POST /shutdown). Returns 0.

    They are loaded as `sieve.load_yaml` loads them (fetched, checked, registered with this
    process's manager, `settings.workers` each) and served as a bundle's functions are.

    Raises:
        ModelYamlError: a problem in the file (``FILE:LINE:COL``, key path, fix).
        ConfigurationError: a bad setting, or the port is taken.
    """
    from sieve_jupyter.modelyaml import load_yaml
    from sieve_jupyter.serve._service import Service

    settings.validate()
    if settings.backend != "local":
        from sieve_jupyter._errors import ConfigurationError

        raise ConfigurationError(
            f"backend: a model.yaml's models run on local workers only (its code and weights "
            f"are fetched on this machine). Fix: serve it without --backend {settings.backend}."
        )
    _configure_server_process(settings)
    models = load_yaml(path, name=name, workers=settings.workers)
    service = Service(settings)
    service.add_registered(list(models), owned=True)
    return _serve_foreground(service, settings)


def _configure_server_process(settings: ServeSettings) -> None:
    """The manager's settings in a process that only serves.

    Its job history is kept short: a notebook reads it (``%sieve jobs``, the side panel), a
    server process never does (``GET /predictions/{id}`` reads the server's own store), and
    every finished job it holds (arguments, result, logs, a lock, callbacks) is a dozen more
    objects for each full pass of the garbage collector to walk, on whichever request triggers
    it. With the default 10,000 such passes took up to 136 ms here."""
    from sieve_jupyter._config import configure

    configure(job_history=SERVER_JOB_HISTORY)
    if settings.busy_poll_us is not None:
        configure(busy_poll_us=settings.busy_poll_us)
    if settings.ray_address is not None:
        configure(ray_address=settings.ray_address)


def _ship_to_ray(src: Path) -> None:
    """Have the bundle's ``src/`` reach its workers on a Ray cluster: Ray uploads the folder
    (once, by content) and starts each actor in a copy of it on its node, where the worker
    imports the module (`_adapter.load_entry` with no folder of its own)."""
    from sieve_jupyter._config import configure

    configure(ray_working_dir=str(src))


def _serve_foreground(service: Any, settings: ServeSettings) -> int:
    sock = inherited(settings.fd) if settings.fd is not None else bind(settings.host, settings.port)
    names = ", ".join(service.functions)
    address = sock.getsockname()[0]
    host = f"[{address}]" if ":" in address else address
    announce = (
        f"sieve-jupyter: serving {names} (default {service.default}) on http://{host}:{{port}}"
    )
    try:
        _asyncio_run(_run(service, settings, sock, announce))
    finally:
        sock.close()
    return 0


class BackgroundServer:
    """A server for functions registered in this process, on a daemon thread; stopped by
    `stop()` or when the process exits."""

    def __init__(self, names: Sequence[str], settings: ServeSettings) -> None:
        from sieve_jupyter.serve._app import create_app
        from sieve_jupyter.serve._service import Service

        settings.validate()
        self.settings = settings
        self.service = Service(settings)
        self.service.add_registered(list(names))
        self.sock = bind(settings.host, settings.port)
        self.port: int = self.sock.getsockname()[1]
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        self.url = f"http://{host}:{self.port}"
        self.app = create_app(self.service, shutdown=self.stop)
        self.server = _uvicorn_server(self.app, settings)
        self.server.config.timeout_graceful_shutdown = 2
        self._thread = threading.Thread(target=self._main, name="sieve-serve", daemon=True)
        self.service.start()
        self._thread.start()
        atexit.register(self.stop)

    def _main(self) -> None:
        async def main() -> None:
            try:
                await self.server.serve(sockets=[self.sock])
            finally:
                await self.app.state.api.close()

        _asyncio_run(main())

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (the functions and their workers stay, as the kernel's)."""
        self.server.should_exit = True
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self.service.stop()
        with contextlib.suppress(OSError):
            self.sock.close()
        atexit.unregister(self.stop)

    def __repr__(self) -> str:
        state = "serving" if self.running else "stopped"
        return f"<sieve server {state} {', '.join(self.service.functions)} at {self.url}>"


_servers: dict[tuple[str, ...], BackgroundServer] = {}


def serve_functions(names: Sequence[str], **settings: Any) -> BackgroundServer:
    """Serve functions registered in this process over HTTP, from a background thread.

    Args:
        names: the functions (the first also answers /predictions).
        **settings: `ServeSettings` fields (``port=0`` picks a free port).
    """
    key = tuple(names)
    old = _servers.pop(key, None)
    if old is not None:
        old.stop()
    settings.setdefault("port", 0)
    server = BackgroundServer(names, ServeSettings(**settings))
    _servers[key] = server
    if sys.flags.interactive:  # pragma: no cover - a hint in terminals
        print(f"serving {', '.join(names)} at {server.url}")
    return server
