"""Where the layers above the manager hook in, without the manager importing them.

The package's public face (`sieve_jupyter/__init__.py`) registers the notebook layer here, so
that in a Jupyter kernel `import sieve_jupyter` alone routes worker output to the right cell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["manager_created_hooks"]

#: called with the manager right after it is created
manager_created_hooks: list[Callable[[Any], None]] = []
