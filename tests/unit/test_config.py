"""`sieve.configure(...)`: unknown keys and bad values name the field and change nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

import sieve_jupyter as sieve
from sieve_jupyter._config import Config


@pytest.fixture(autouse=True)
def restore_config() -> Iterator[Config]:
    """Put every setting back, so a test that changes one cannot leak into the next."""
    saved = dataclasses.replace(sieve.config)
    yield saved
    for item in dataclasses.fields(Config):
        setattr(sieve.config, item.name, getattr(saved, item.name))


def test_configure_changes_settings_and_returns_the_config() -> None:
    result = sieve.configure(workers=3, gpu_fallback="cpu", user="alice")
    assert result is sieve.config
    assert (sieve.config.workers, sieve.config.gpu_fallback, sieve.config.user) == (
        3,
        "cpu",
        "alice",
    )


def test_unknown_key_is_named_and_known_keys_are_listed() -> None:
    before = dataclasses.asdict(sieve.config)
    with pytest.raises(sieve.ConfigurationError) as caught:
        sieve.configure(worker=2)
    message = str(caught.value)
    assert message.startswith("worker:")
    for known in ("backend", "workers", "user", "gpu_fallback", "start_timeout"):
        assert known in message
    assert dataclasses.asdict(sieve.config) == before


def test_a_good_value_beside_an_unknown_key_is_not_applied() -> None:
    before = dataclasses.asdict(sieve.config)
    with pytest.raises(sieve.ConfigurationError, match="colour"):
        sieve.configure(workers=5, colour="blue")
    assert dataclasses.asdict(sieve.config) == before


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"workers": 0}, "workers"),
        ({"workers": 65}, "workers"),
        ({"workers": "2"}, "workers"),
        ({"workers": True}, "workers"),
        ({"backend": "nope"}, "backend"),
        ({"gpu_fallback": "maybe"}, "gpu_fallback"),
        ({"user": "a/b"}, "user"),
        ({"user": ""}, "user"),
        ({"start_timeout": 0}, "start_timeout"),
        ({"start_timeout": True}, "start_timeout"),
        ({"job_history": 0}, "job_history"),
        ({"job_history": True}, "job_history"),
        ({"job_history": 10.0}, "job_history"),
        ({"docker_base_image": ""}, "docker_base_image"),
        ({"docker_base_image": " python:3.11"}, "docker_base_image"),
        ({"docker_network": ""}, "docker_network"),
        ({"docker_network": None}, "docker_network"),
        ({"docker_ca_bundle": "/no/such/bundle.pem"}, "docker_ca_bundle"),
        ({"busy_poll_us": -1}, "busy_poll_us"),
        ({"busy_poll_us": 20_000}, "busy_poll_us"),
        ({"busy_poll_us": 0.5}, "busy_poll_us"),
        ({"follow_caller": "no"}, "follow_caller"),
        ({"follow_caller": 0}, "follow_caller"),
        # one bad value among good ones: nothing at all is applied
        ({"user": "fine", "workers": 2, "backend": "nope"}, "backend"),
    ],
)
def test_bad_values_name_the_field_and_leave_config_unchanged(
    settings: dict[str, Any], field: str
) -> None:
    before = dataclasses.asdict(sieve.config)
    with pytest.raises(sieve.ConfigurationError) as caught:
        sieve.configure(**settings)
    assert str(caught.value).startswith(f"{field}:")
    assert "Fix:" in str(caught.value)
    assert isinstance(caught.value, ValueError)  # a stdlib base where the meaning matches
    assert dataclasses.asdict(sieve.config) == before


def test_bad_backend_lists_the_known_ones() -> None:
    with pytest.raises(sieve.ConfigurationError, match="docker.*local|local.*docker"):
        sieve.configure(backend="nope")


def test_bad_backend_in_a_decorator_fails_at_decoration(unique: Any) -> None:
    with pytest.raises(sieve.ConfigurationError, match="backend"):

        @sieve.function(name=unique("badbackend"), backend="nope")
        def f() -> None:
            pass

    with pytest.raises(sieve.ConfigurationError, match="workers"):

        @sieve.function(name=unique("badworkers"), workers=0)
        def g() -> None:
            pass


def test_every_backend_a_setting_may_name_exists() -> None:
    from sieve_jupyter._config import BACKEND_NAMES
    from sieve_jupyter.backends import BACKENDS

    assert sorted(BACKEND_NAMES) == sorted(BACKENDS)
