"""The mutual HMAC-SHA256 challenge a connection opens with, before any pickle is read (pickles
execute code): each end proves it knows the worker's secret, raw bytes both ways."""

from __future__ import annotations

import hmac
import os
import socket

__all__ = ["AuthenticationError", "authenticate_client", "authenticate_server"]

_CHALLENGE_BYTES = 32
_DIGEST = "sha256"


class AuthenticationError(ConnectionError):
    """The peer does not know the worker's secret."""


def _recv_exact_raw(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AuthenticationError("peer closed the connection during authentication")
        data += chunk
    return data


def _respond(secret: bytes, challenge: bytes) -> bytes:
    return hmac.new(secret, challenge, _DIGEST).digest()


def authenticate_server(sock: socket.socket, secret: bytes) -> None:
    """Manager side of the mutual challenge/response (raw bytes, no pickles yet)."""
    mine = os.urandom(_CHALLENGE_BYTES)
    sock.sendall(mine)
    answer = _recv_exact_raw(sock, 32)
    if not hmac.compare_digest(answer, _respond(secret, mine)):
        raise AuthenticationError("worker failed the challenge: wrong secret")
    theirs = _recv_exact_raw(sock, _CHALLENGE_BYTES)
    sock.sendall(_respond(secret, theirs))


def authenticate_client(sock: socket.socket, secret: bytes) -> None:
    """Worker side of the mutual challenge/response."""
    challenge = _recv_exact_raw(sock, _CHALLENGE_BYTES)
    sock.sendall(_respond(secret, challenge))
    mine = os.urandom(_CHALLENGE_BYTES)
    sock.sendall(mine)
    answer = _recv_exact_raw(sock, 32)
    if not hmac.compare_digest(answer, _respond(secret, mine)):
        raise AuthenticationError("manager failed the challenge: wrong secret")
