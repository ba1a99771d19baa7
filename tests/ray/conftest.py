"""The ray tier: every test here runs on the session's local two-node Ray cluster (marker
`ray`, given by the folder: tests/conftest.py).

Its fixtures live in tests/ray_tier.py, a plugin the whole suite loads, so the shared behaviour
tests can use the cluster too.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _cluster(ray_cluster: object) -> None:
    """Every test here needs the cluster (skipped, or failed in CI, without Ray)."""
