"""The ray tier: every test here runs on the session's local two-node Ray cluster (marker
`ray`).

Its fixtures live in tests/ray_tier.py, a plugin the whole suite loads, so the shared behaviour
tests can use the cluster too.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ray)


@pytest.fixture(autouse=True)
def _cluster(ray_cluster: object) -> None:
    """Every test here needs the cluster (skipped, or failed in CI, without Ray)."""
