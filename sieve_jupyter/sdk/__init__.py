"""The Sieve SDK surface: `@function`, `@Model`, their handles, and `function.get`."""

from __future__ import annotations

from sieve_jupyter.sdk._decorators import Model, function, get, register
from sieve_jupyter.sdk._handles import FunctionHandle, ModelHandle, wait_result

__all__ = ["FunctionHandle", "Model", "ModelHandle", "function", "get", "register", "wait_result"]
