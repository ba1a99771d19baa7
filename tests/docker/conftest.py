"""The docker tier: every test here needs a real Docker engine (marker `docker`).

Its fixtures (engine, base image, settings) live in tests/docker_tier.py, a plugin the whole
suite loads, so the shared behaviour tests can use them too.
"""

from __future__ import annotations
