"""Deployment names, versions and options are checked before anything starts, and the local
registry drops the entries of processes that are gone (pure: no server is started here)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sieve_jupyter._errors import ConfigurationError, DeployError, SieveWarning
from sieve_jupyter.backends._identity import ProcessIdentity
from sieve_jupyter.deploy._model import Deployment, parse_name
from sieve_jupyter.deploy._options import DeployOptions
from sieve_jupyter.deploy._paths import slug
from sieve_jupyter.deploy._plan import content_digest
from sieve_jupyter.deploy._registry import LocalRegistry


def test_names_read_user_name_and_version() -> None:
    assert str(parse_name("alice/adder", "bob")) == "alice/adder"
    assert parse_name("adder", "bob").key == "bob/adder"
    assert parse_name("alice/adder:3", "bob").version == "3"


@pytest.mark.parametrize("text", ["alice/adder:", "a/b/c", "alice/", ""])
def test_a_malformed_name_says_what_a_name_is(text: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a deployment name. Fix: 'user/name'"):
        parse_name(text, "bob")


def _deployment(version: str, digest: str) -> Deployment:
    return Deployment(
        user="alice",
        name="adder",
        version=version,
        digest=digest,
        backend="local",
        url="http://127.0.0.1:1",
        functions=("adder",),
        default="adder",
        workers=1,
        created_at=0.0,
        state="serving",
        token="secret-token-value",
    )


def test_a_version_is_named_by_counter_full_version_or_hash_prefix() -> None:
    deployment = _deployment("3-1f2e3d4c5b6a", "1f2e3d4c5b6a77")
    assert deployment.matches("3") and deployment.matches("3-1f2e3d4c5b6a")
    assert deployment.matches("1f2e") and not deployment.matches("1f2")
    assert not deployment.matches("4")
    assert "secret-token-value" not in json.dumps(deployment.describe())
    assert "secret-token-value" not in repr(deployment)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"backend": "kubernetes"}, "backend:"),
        ({"workers": 0}, "workers"),
        ({"port": 70000}, "port:"),
        ({"token": "short"}, "token:"),
        ({"host": ""}, "host:"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"backend": "local", "workers": 1, **options}
    with pytest.raises(ConfigurationError, match=field) as caught:
        DeployOptions(**values).checked()  # type: ignore[arg-type]
    assert "Fix:" in str(caught.value)


def test_a_ray_deployment_is_versioned_by_its_cluster() -> None:
    """A deployment whose workers are Ray actors: its cluster's address is part of what runs
    (another cluster is another version); a local one's settings do not mention Ray."""
    on_ray = DeployOptions("ray", 1, ray_address="ray://head:10001").checked()
    assert on_ray.settings()["ray_address"] == "ray://head:10001"
    assert "ray_address" not in DeployOptions("local", 1).checked().settings()


def test_another_interface_than_loopback_gets_a_token() -> None:
    assert DeployOptions("local", 1, "127.0.0.1").checked().token is None
    token = DeployOptions("local", 1, "0.0.0.0").checked().token  # noqa: S104
    assert token is not None and len(token) >= 32


def test_the_content_hash_holds_no_secret_and_sees_every_change() -> None:
    files = {"src/main.py": b"x = 1\n"}
    settings = {"backend": "local", "env": ["API_KEY"], "token": True}
    first = content_digest(files, settings)
    assert first == content_digest(dict(files), dict(settings))
    assert first != content_digest({"src/main.py": b"x = 2\n"}, settings)
    assert first != content_digest(files, {**settings, "workers": 2})


def test_slugs_never_meet() -> None:
    assert slug("adder") == "adder"
    assert slug("a/b") != slug("a_b")
    assert "/" not in slug("../x")


def _dead_identity() -> str:
    me = ProcessIdentity.current()
    return ProcessIdentity(me.host, me.boot_id, me.pid, "1").label  # same pid, other start


def test_an_entry_whose_process_is_gone_is_removed_with_its_files(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "deployments")
    folder = registry.root / "alice" / "adder" / "1-abc"
    folder.mkdir(parents=True)
    (folder / "server.log").write_text("last words\n")
    alive = {
        "user": "bob",
        "name": "adder",
        "version": "1-def",
        "port": 1,
        "process": ProcessIdentity.current().label,
    }
    registry.record(
        {
            "user": "alice",
            "name": "adder",
            "version": "1-abc",
            "port": 2,
            "process": _dead_identity(),
            "dir": str(folder),
            "state": "serving",
        }
    )
    registry.record(alive)
    with pytest.warns(
        SieveWarning,
        match=r"alice/adder version 1-abc had stopped(.|\n)*"
        "last words",
    ):
        entries = registry.entries()
    assert [e["user"] for e in entries] == ["bob"]
    assert not (registry.root / "alice").exists()
    assert stat.S_IMODE(os.stat(registry.root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(registry.path).st_mode) == 0o600


def test_a_deploy_lock_held_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "deployments")
    with registry.locked() as data:
        data["deploying"]["alice/adder"] = _dead_identity()
    with registry.deploying("alice/adder", timeout=5):
        held = json.loads(registry.path.read_text())["deploying"]["alice/adder"]
        assert held == ProcessIdentity.current().label
    assert json.loads(registry.path.read_text())["deploying"] == {}


def test_a_deploy_lock_held_by_a_live_process_is_waited_for(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "deployments")
    with registry.locked() as data:
        data["deploying"]["alice/adder"] = ProcessIdentity.of(os.getppid()).label
    with (
        pytest.raises(DeployError, match="another process .* has been deploying it"),
        registry.deploying("alice/adder", timeout=0.3),
    ):
        pass


def test_without_jupyter_the_registry_is_where_jupyter_would_put_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from sieve_jupyter.deploy._paths import deployments_dir

    monkeypatch.delenv("SIEVE_DEPLOYMENTS_DIR", raising=False)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    with_jupyter = deployments_dir()
    monkeypatch.setitem(sys.modules, "jupyter_core.paths", None)  # (as if not installed)
    assert deployments_dir() == with_jupyter == tmp_path / "data" / "sieve-jupyter" / "deployments"
    monkeypatch.delenv("JUPYTER_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert deployments_dir() == tmp_path / "xdg" / "jupyter" / "sieve-jupyter" / "deployments"
