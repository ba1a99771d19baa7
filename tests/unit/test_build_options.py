"""Docker build/run settings: where they come from, and errors that name the setting and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sieve_jupyter import _config
from sieve_jupyter._errors import ConfigurationError
from sieve_jupyter.backends._docker_options import DockerOptions
from sieve_jupyter.backends._docker_owner import Owner, current_owner, find_dead_owned


def test_environment_variables_set_the_options() -> None:
    options = DockerOptions.from_env(
        {
            "SIEVE_DOCKER_BASE_IMAGE": "local/base:1",
            "SIEVE_DOCKER_CA_BUNDLE": "/etc/corp.pem",
            "SIEVE_DOCKER_NETWORK": "bridge",
            "SIEVE_DOCKER_BUILD_NETWORK": "host",
            "SIEVE_DOCKER_MOUNTS": "/data:/data:ro,/models",
        }
    )
    assert options.base_image == "local/base:1"
    assert options.ca_bundle == Path("/etc/corp.pem")
    assert (options.network_mode, options.build_network) == ("bridge", "host")
    assert options.mounts == ("/data:/data:ro", "/models")
    build = options.build_options()
    assert build.base_image == "local/base:1" and build.ca_bundle == Path("/etc/corp.pem")


def test_defaults_give_workers_a_network_and_official_bases() -> None:
    # a __setup__ usually downloads weights; the kernel socket itself needs no network
    options = DockerOptions.from_env({})
    assert options.network_mode == "bridge"
    assert options.base_image is None
    assert options.cpu_base_template == "python:{python}-slim"


def test_configure_wins_over_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_config, "config", _config.Config())
    monkeypatch.setenv("SIEVE_DOCKER_BASE_IMAGE", "from-env:1")
    assert DockerOptions.current().base_image == "from-env:1"
    _config.config.docker_base_image = "from-configure:1"
    _config.config.docker_network = "none"
    _config.config.docker_ca_bundle = "/etc/corp.pem"
    options = DockerOptions.current()
    assert options.base_image == "from-configure:1"
    assert options.network_mode == "none"
    assert options.ca_bundle == Path("/etc/corp.pem")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("/data", ("/data", "/data", False)),
        ("/data:/in:ro", ("/data", "/in", True)),
        ("/data:rw", ("/data", "/data", False)),
    ],
)
def test_mounts_parse(text: str, parsed: tuple[str, str, bool]) -> None:
    assert DockerOptions.parse_mount(text) == parsed


@pytest.mark.parametrize("text", ["data", "/a:b", "/a:/b:/c:ro"])
def test_bad_mount_names_the_setting_and_fix(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"docker_mounts: .* Fix: "):
        DockerOptions(mounts=(text,))


def test_bad_base_template_names_the_setting_and_fix() -> None:
    with pytest.raises(ConfigurationError, match=r"docker_gpu_base_template: .* Fix: .*\{cuda\}"):
        DockerOptions(gpu_base_template="nvidia/cuda:{version}-runtime")


def test_empty_network_names_the_setting_and_fix() -> None:
    with pytest.raises(ConfigurationError, match=r"docker_network: .* Fix: "):
        DockerOptions(network_mode="")


def test_owner_labels_round_trip_and_identify_this_process() -> None:
    me = current_owner()
    assert Owner.parse(me.label) == me
    assert me.is_alive()
    assert Owner.parse("not an owner") is None


def test_only_dead_owners_on_this_host_are_reaped() -> None:
    me = current_owner()
    dead = Owner(me.host, me.boot_id, me.pid, "1")  # same pid, another start: pid reused
    rebooted = Owner(me.host, "another-boot", me.pid, me.start_ticks)
    elsewhere = Owner("another-host", "x", 1, "1")
    listed = [
        {"Id": "mine", "Labels": {"io.sieve-jupyter.owner": me.label}},
        {"Id": "dead", "Labels": {"io.sieve-jupyter.owner": dead.label}},
        {"Id": "rebooted", "Labels": {"io.sieve-jupyter.owner": rebooted.label}},
        {"Id": "elsewhere", "Labels": {"io.sieve-jupyter.owner": elsewhere.label}},
        {"Id": "unlabelled", "Labels": None},
    ]
    assert find_dead_owned(listed, me) == ["dead", "rebooted"]
