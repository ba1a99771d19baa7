"""The spec layer: what a decorated function *is*, as validated, JSON-round-trippable data.

Pure data: nothing here does I/O or starts anything. Every invalid value raises
`sieve_jupyter.SpecError` naming the field and the fix.

    spec = spec_from_callable(fn, kind="function", name="resize", gpu=gpu.T4(split=2))
    spec.inputs                       # JSON Schema of the parameters
    spec.environment.content_hash()   # what a container image depends on
    FunctionSpec.from_json(spec.to_json()) == spec
"""

from __future__ import annotations

from sieve_jupyter.spec._arguments import ArgumentChecker
from sieve_jupyter.spec._callable import OPTIONS, spec_from_callable
from sieve_jupyter.spec._cuda import CUDA_VERSIONS, DEFAULT_CUDA_VERSION, resolve_cuda_version
from sieve_jupyter.spec._docstring import parse_docstring
from sieve_jupyter.spec._gpu import GPU_KINDS, MAX_SPLIT, GpuKind, GpuRequest, coerce_gpu, gpu
from sieve_jupyter.spec._model import KINDS, Env, Environment, FunctionSpec, Metadata
from sieve_jupyter.spec._openapi import PREDICTION_STATUSES, WEBHOOK_EVENTS, openapi_document
from sieve_jupyter.spec._schema import FILE_FORMAT, RESERVED_INPUTS, type_schema

__all__ = [
    "CUDA_VERSIONS",
    "DEFAULT_CUDA_VERSION",
    "FILE_FORMAT",
    "GPU_KINDS",
    "KINDS",
    "MAX_SPLIT",
    "PREDICTION_STATUSES",
    "OPTIONS",
    "RESERVED_INPUTS",
    "WEBHOOK_EVENTS",
    "ArgumentChecker",
    "Env",
    "Environment",
    "FunctionSpec",
    "GpuKind",
    "GpuRequest",
    "Metadata",
    "coerce_gpu",
    "gpu",
    "openapi_document",
    "parse_docstring",
    "resolve_cuda_version",
    "spec_from_callable",
    "type_schema",
]
