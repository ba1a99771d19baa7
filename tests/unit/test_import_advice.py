"""A failed import is explained truthfully wherever the package turns one into advice: a missing
third-party module names the extra (or package) that installs it; a missing module of
sieve-jupyter itself says the installation is incomplete and how to reinstall, never an extra.

Modules are made unimportable the way Python itself reports it (a ``None`` entry in
``sys.modules`` raises ``ModuleNotFoundError`` with that module's name); the packaging tier
checks the same with files really missing from an installed wheel.
"""

from __future__ import annotations

import sys

import pytest

import sieve_jupyter
from sieve_jupyter import ConfigurationError, InstallationError
from sieve_jupyter._imports import installation_error, own_missing_module
from sieve_jupyter.backends import create_backend

REINSTALL = f"pip install --force-reinstall --no-deps 'sieve-jupyter=={sieve_jupyter.__version__}'"


def make_unimportable(monkeypatch: pytest.MonkeyPatch, *missing: str, reload: str) -> None:
    """Make each of `missing` fail to import, and forget `reload` so it is imported again."""
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, reload, raising=False)


def test_a_missing_third_party_module_advises_the_backends_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_unimportable(monkeypatch, "docker", reload="sieve_jupyter.backends.docker")
    with pytest.raises(ConfigurationError) as info:
        create_backend("docker")
    assert str(info.value) == (
        "backend: the 'docker' backend needs an optional dependency (docker). "
        "Fix: pip install 'sieve-jupyter[docker]'."
    )


def test_a_missing_module_of_the_package_says_the_installation_is_broken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # what a wheel built without sieve_jupyter/build/ gave its users
    make_unimportable(monkeypatch, "sieve_jupyter.build", reload="sieve_jupyter.backends.docker")
    with pytest.raises(InstallationError) as info:
        create_backend("docker")
    message = str(info.value)
    assert message.startswith(
        "the 'docker' backend cannot load: sieve_jupyter.build is part of sieve-jupyter itself"
    )
    assert str(sieve_jupyter.__path__[0]) in message  # where the incomplete installation is
    assert "No extra installs it" in message and REINSTALL in message
    assert "sieve-jupyter[" not in message  # no extra can help
    assert isinstance(info.value.__cause__, ImportError)


def test_a_missing_core_dependency_names_no_extra_that_does_not_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_unimportable(
        monkeypatch, "packaging", "packaging.requirements", reload="sieve_jupyter.backends.local"
    )
    with pytest.raises(ConfigurationError) as info:
        create_backend("local")
    assert str(info.value) == (
        "backend: the 'local' backend cannot import packaging.requirements, a dependency of "
        "sieve-jupyter. Fix: pip install 'sieve-jupyter' (it installs what is missing)."
    )


def test_only_modules_of_the_package_count_as_its_own() -> None:
    def failed(name: str | None) -> ImportError:
        return ModuleNotFoundError(f"No module named {name!r}", name=name)

    assert own_missing_module(failed("sieve_jupyter.build._context")) == (
        "sieve_jupyter.build._context"
    )
    assert own_missing_module(failed("sieve_jupyter")) == "sieve_jupyter"
    for other in ("docker", "sieve_jupyter_extras", "sieve", None):
        assert own_missing_module(failed(other)) is None
        assert installation_error(failed(other), "x") is None
    # "cannot import name" from a module of ours is a broken installation too
    cannot = ImportError(
        "cannot import name 'make_build_context' from 'sieve_jupyter.build'",
        name="sieve_jupyter.build",
    )
    error = installation_error(cannot, "the 'docker' backend")
    assert error is not None and "cannot import name 'make_build_context'" in str(error)


def test_an_image_field_without_pillow_advises_installing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("ipywidgets")
    from sieve_jupyter.jupyter.widgets._fields import make_field
    from sieve_jupyter.jupyter.widgets._schema import FormInputError

    monkeypatch.setitem(sys.modules, "PIL", None)
    schema = {"x-python-type": "PIL.Image.Image"}
    photo = make_field("photo", schema, {"properties": {"photo": schema}}, required=True)
    photo.set(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(FormInputError) as info:
        photo.value()
    assert (info.value.field, info.value.fix) == ("photo", "pip install pillow")
    assert "needs Pillow to open the image. Fix: pip install pillow" in str(info.value)
