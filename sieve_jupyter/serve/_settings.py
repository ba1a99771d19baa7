"""What a server can be told: where it listens, its limits, its token; checked before it starts."""

from __future__ import annotations

import dataclasses
import ipaddress
import os

from sieve_jupyter._errors import ConfigurationError

__all__ = ["SERVE_BACKENDS", "TOKEN_VARIABLE", "ServeSettings"]

#: where a server's workers can run (a Docker worker would be a container beside the server's
#: own: the bundle's image is the way to serve in a container)
SERVE_BACKENDS = ("local", "ray")
#: With this set, every route but /health-check needs ``Authorization: Bearer <token>``.
TOKEN_VARIABLE = "SIEVE_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (``localhost`` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass
class ServeSettings:
    """A server's settings (``sieve-jupyter serve`` flags; see docs/serving.md).

    Attributes:
        host: the address to bind; loopback unless told otherwise.
        port: the port; 0 picks a free one (reported on stdout and in `port_file`).
        workers: warm workers per function.
        default: the function that also answers /predictions (None: the bundle's default).
        token: the bearer token every route but /health-check requires (None: none);
            defaults to ``SIEVE_SERVE_TOKEN``.
        insecure: allow a non-loopback `host` without a token.
        max_body_bytes: larger request bodies get 413.
        queue_size: predictions that may wait per function beyond one per worker; more get 429.
        inline_file_bytes: file outputs up to this size are data URLs, larger ones links to
            ``GET /files/{id}``.
        keep_seconds: how long a finished prediction (and its output files) can be fetched.
        port_file: a file to write the chosen port to, once listening.
        access_log: log every request (off: it costs time on every call).
        fd: a listening socket this process inherited, served instead of binding `host` and
            `port` (whoever started the server chose the port and keeps it from others).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    default: str | None = None
    token: str | None = dataclasses.field(
        default_factory=lambda: os.environ.get(TOKEN_VARIABLE) or None
    )
    insecure: bool = False
    max_body_bytes: int = 100 * 1024 * 1024
    queue_size: int = 64
    inline_file_bytes: int = 5 * 1024 * 1024
    keep_seconds: float = 600.0
    port_file: str | None = None
    access_log: bool = False
    #: microseconds a waiting side polls before it sleeps (`sieve.configure(busy_poll_us)`);
    #: None keeps the process's setting
    busy_poll_us: int | None = None
    fd: int | None = None
    #: where the workers run: processes of this machine ("local"), or actors of a Ray
    #: cluster ("ray"), which can be spread over its machines
    backend: str = "local"
    #: with backend "ray": the cluster, as `sieve.configure(ray_address=...)` takes it (None:
    #: RAY_ADDRESS, else a Ray started on this machine)
    ray_address: str | None = None

    def validate(self) -> None:
        """Raises `ConfigurationError` naming the setting and the fix, and `DependencyError`
        for a backend whose packages are not installed."""
        if self.backend not in SERVE_BACKENDS:
            raise ConfigurationError(
                f"backend: {self.backend!r} cannot serve. Fix: --backend "
                f"{' or '.join(SERVE_BACKENDS)} (a Docker image of the bundle: "
                "`sieve-jupyter build`)."
            )
        if self.ray_address is not None and self.backend != "ray":
            raise ConfigurationError(
                "ray_address: is set but the workers run locally. Fix: add --backend ray."
            )
        if self.backend == "ray":
            from sieve_jupyter._imports import require_extra

            require_extra("ray", ["ray"], "serving on a Ray cluster (--backend ray)")
        if not is_loopback(self.host) and not self.token and not self.insecure:
            raise ConfigurationError(
                f"host: {self.host} is reachable from other machines and no token is set, so "
                "anyone who can reach it could run the functions. Fix: set "
                f"{TOKEN_VARIABLE} (clients then send `Authorization: Bearer <token>`), or "
                "pass --insecure if the network is trusted."
            )
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"port: {self.port} is not a port. Fix: 0 to 65535.")
        if not 1 <= self.workers <= 64:
            raise ConfigurationError(f"workers: {self.workers}. Fix: 1 to 64.")
        for name in ("max_body_bytes", "inline_file_bytes"):
            if getattr(self, name) < 0:
                raise ConfigurationError(
                    f"{name}: {getattr(self, name)} is negative. Fix: a number of bytes, 0 or more."
                )
        if self.queue_size < 0:
            raise ConfigurationError(
                f"queue_size: {self.queue_size} is negative. Fix: 0 (no waiting) or more."
            )
        if self.keep_seconds <= 0:
            raise ConfigurationError(
                f"keep_seconds: {self.keep_seconds} is not positive. Fix: how long finished "
                "predictions stay readable, in seconds (600 by default)."
            )
        if self.token is not None and len(self.token) < 16:
            raise ConfigurationError(
                f"token: {TOKEN_VARIABLE} is {len(self.token)} characters long; a guessable "
                "token protects nothing. Fix: use 16 or more, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`."
            )
