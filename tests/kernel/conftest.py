"""The kernel tier: a real ipykernel driven over jupyter_client (see _kernel.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _kernel import KernelSession, start_kernel


@pytest.fixture
def kernel_session(tmp_path: Path) -> Iterator[KernelSession]:
    """A fresh kernel per test (workers and registrations do not leak between tests)."""
    session = start_kernel(tmp_path)
    try:
        yield session
    finally:
        session.close()
