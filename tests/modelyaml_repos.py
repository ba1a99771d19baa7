"""What the model.yaml tests load: a small YOLOR-style git repository, and real servers for it.

`make_repository` builds a git repository with an ``inference.py`` (``get_model(params_url)`` and
``predict(model, datapoints)``), a package it imports, and a params file whose value changes
between commits (so a test can tell which commit a worker runs). `GitHttpServer` serves bare
repositories over git's smart HTTP protocol (``git http-backend``) on a loopback port and can
demand a token; `FileServer` serves a folder over plain HTTP.
"""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INFERENCE_PY = '''\
"""A YOLOR-style inference module (made by the tests)."""
import os

from utils.scale import apply


def get_model(params_url: str, device: str = "cpu"):
    with open(params_url) as f:
        scale = float(f.read())
    print(f"loading {os.path.basename(params_url)}")
    return {"scale": scale, "device": device, "cwd": os.getcwd()}


def predict(model, datapoints: list[float], threshold: float = 0.5) -> list[dict]:
    """Scale each datapoint.

    Args:
        datapoints: numbers to scale.
        threshold: above it, the class is 1.
    """
    return [
        {"boxes": [apply(x, model["scale"])], "classes": [int(x > threshold)],
         "scores": [model["device"]]}
        for x in datapoints
    ]


def predict_missing_scores(model, datapoints):
    return [{"boxes": [x], "classes": [0]} for x in datapoints]


def get_named_model(params_url, name):
    return dict(get_model(params_url), name=name)


def predict_named(model, datapoints):
    return [{"name": model["name"], "value": apply(x, model["scale"])} for x in datapoints]


def read_secret(name):
    return os.environ[name]


def predict_secret(secret, datapoints):
    return [len(secret) for _ in datapoints]
'''

SCALE_PY = """\
def apply(x, scale):
    return x * scale
"""

#: the runtime section of the tests' model.yaml files (indented for a model entry)
RUNTIME = """\
    runtime:
      device: cpu
      load:
        entrypoint: inference:get_model
        inputs:
          - name: params_url
            value: ${model.files.params.url}
          - name: device
            value: ${model.runtime.device}
        output:
          name: model
      predict:
        entrypoint: inference:predict
        inputs:
          - name: model
            value: ${model.runtime.load.output.model}
          - name: datapoints
            value: ${datapoints}
        output:
          name: predictions
          keys: [boxes, classes, scores]
"""


#: a repository's own model.yaml whose only entry is a universal runtime
UNIVERSAL_YAML = """\
models:
  - name: ${model.name}
    files:
      - name: params
        url: results/params.txt
    runtime:
      load:
        entrypoint: inference:get_named_model
        inputs:
          - name: params_url
            value: ${model.files.params.url}
          - name: name
            value: ${model.name}
        output:
          name: model
      predict:
        entrypoint: inference:predict_named
        inputs:
          - name: model
            value: ${model.runtime.load.output.model}
          - name: datapoints
            value: ${datapoints}
"""


def model_yaml(
    name: str = "YOLOR-P6",
    *,
    repository: str = "",
    files: str = "",
    runtime: str = RUNTIME,
    extra: str = "",
) -> str:
    """A model.yaml with one model; `repository` and `files` are YAML blocks (indented)."""
    files = (
        files
        or """\
    files:
      - name: params
        url: results/params.txt
"""
    )
    return f"models:\n  - name: {name}\n{repository}{files}{runtime}{extra}"


def git(*args: str, cwd: Path) -> str:
    env = dict(os.environ)
    env.update(
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.strip()


@dataclass
class Repository:
    """A test repository: ``main`` has params 3.0 at `head`; branch ``v1`` and `first` have 2.0."""

    path: Path
    first: str
    head: str

    @property
    def url(self) -> str:
        return self.path.as_uri()


def make_repository(path: Path, own_yaml: str | None = None) -> Repository:
    """A git repository with the YOLOR-style code; `own_yaml` is committed as its model.yaml."""
    (path / "utils").mkdir(parents=True)
    (path / "results").mkdir()
    (path / "inference.py").write_text(INFERENCE_PY)
    (path / "utils" / "__init__.py").write_text("")
    (path / "utils" / "scale.py").write_text(SCALE_PY)
    (path / "results" / "params.txt").write_text("2.0\n")
    if own_yaml is not None:
        (path / "model.yaml").write_text(own_yaml)
    git("init", "-q", "-b", "main", cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "first", cwd=path)
    first = git("rev-parse", "HEAD", cwd=path)
    git("branch", "v1", cwd=path)
    (path / "results" / "params.txt").write_text("3.0\n")
    git("commit", "-q", "-am", "bigger scale", cwd=path)
    return Repository(path, first, git("rev-parse", "HEAD", cwd=path))


def files_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def tree_contains(root: Path, needle: str) -> list[Path]:
    """Files under `root` whose bytes contain `needle`."""
    data = needle.encode()
    return [p for p in files_under(root) if data in p.read_bytes()]


def basic_auth(token: str) -> str:
    return "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


# --- servers on loopback ports ------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    token: str | None
    seen: list[str | None]


class _GitHandler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        self._serve()

    def do_POST(self) -> None:  # noqa: N802 - stdlib's name
        self._serve()

    def _serve(self) -> None:
        header = self.headers.get("Authorization")
        self.server.seen.append(header)
        if self.server.token is not None and header != basic_auth(self.server.token):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            check=False,
            timeout=120,
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@dataclass
class GitHttpServer:
    """Bare repositories under `root` over smart HTTP; `token`: demanded as HTTP basic auth."""

    root: Path
    token: str | None = None
    seen: list[str | None] = field(default_factory=list)
    port: int = 0

    def publish(self, repository: Repository, name: str = "yolor.git") -> str:
        """A bare copy of `repository` on this server; returns its URL."""
        git("clone", "-q", "--bare", str(repository.path), str(self.root / name), cwd=self.root)
        return f"http://127.0.0.1:{self.port}/{name}"


@contextmanager
def git_http_server(root: Path, token: str | None = None) -> Iterator[GitHttpServer]:
    root.mkdir(parents=True, exist_ok=True)
    state = GitHttpServer(root, token)
    server = _Server(("127.0.0.1", 0), _GitHandler)
    server.root, server.token, server.seen = root, token, state.seen
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def file_server(root: Path) -> Iterator[str]:
    """Serve `root` over HTTP on a loopback port; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def indent(text: str, spaces: int) -> str:
    return textwrap.indent(textwrap.dedent(text), " " * spaces)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
