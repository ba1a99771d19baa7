"""The docker tier: every test here needs a real Docker engine (marker `docker`).

Its fixtures (engine, base image, settings) live in tests/docker_tier.py, a plugin the whole
suite loads, so the shared behaviour tests can use them too.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)
