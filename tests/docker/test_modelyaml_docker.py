"""A model.yaml model on the Docker backend: built on its ``runtime.image``, its checkout mounted
read-only at the same path, and its access token in no image, container or spec."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from modelyaml_repos import make_repository, model_yaml, tree_contains
from support import Unique

import sieve_jupyter as sieve
from sieve_jupyter.manager import get_manager

TOKEN = "tok-docker-3b1f-never-stored"


def test_a_model_yaml_runs_in_a_container_built_on_its_runtime_image(
    docker_env: dict[str, str],
    docker_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique: Unique,
) -> None:
    base = docker_env["SIEVE_DOCKER_BASE_IMAGE"]
    # The kernel-wide base cannot be had: only runtime.image lets the build start.
    monkeypatch.setenv("SIEVE_DOCKER_BASE_IMAGE", "sieve-jupyter-test/absent:never")
    monkeypatch.setenv("SIEVE_JUPYTER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GIT_KEY", TOKEN)
    repository = make_repository(tmp_path / "upstream")
    name = unique("yolor-docker")
    remote = (
        f"    repository:\n      url: {repository.url}\n      hash: {repository.first}\n"
        "      access_token: ${GIT_KEY}\n"
    )
    path = tmp_path / "model.yaml"
    path.write_text(
        model_yaml(name, repository=remote).replace(
            "device: cpu", f"device: cpu\n      image: {base}"
        )
    )
    model = sieve.load_yaml(path, backend="docker")[name]
    try:
        future = model.push([1.5, 0.25])
        assert future.result(timeout=900) == [
            {"boxes": [3.0], "classes": [1], "scores": ["cpu"]},
            {"boxes": [0.5], "classes": [0], "scores": ["cpu"]},
        ]
        assert "loading params.txt" in future.stdout
        [worker] = model.workers
        container = docker_client.api.inspect_container(worker["container"])
        image = docker_client.api.inspect_image(worker["image"])
        assert image["Config"]["Labels"]["io.sieve-jupyter.base-image"] == base
        [checkout] = [
            p
            for p in (tmp_path / "cache").glob("modelyaml/repos/*/*")
            if p.name == repository.first
        ]
        mounts = {m["Destination"]: m for m in container["Mounts"]}
        assert mounts[str(checkout)]["Source"] == str(checkout)
        assert mounts[str(checkout)]["RW"] is False

        encoded = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        backend = get_manager().backend("docker")
        context = backend.build_context(model.spec)
        history = docker_client.api.history(worker["image"])
        kept = [
            json.dumps(container),
            json.dumps(image),
            json.dumps(history),
            *(data.decode(errors="replace") for data in context.files.values()),
            model.spec.to_json(),
            json.dumps(future.snapshot()),
            future.stdout,
            future.stderr,
        ]
        for secret in (TOKEN, encoded):
            assert not any(secret in text for text in kept)
            assert tree_contains(tmp_path / "cache", secret) == []
    finally:
        model.stop()
