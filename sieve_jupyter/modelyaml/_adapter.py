"""A resolved model.yaml model -> a model class, its spec, and a registered handle.

The class comes from `sieve_jupyter.runtime._entrypoints` (what runs in the worker); the spec is
the one `@sieve.Model` would build for it, plus what only a model.yaml says: the base image
(``runtime.image``) and the host paths a container must see (the checkout and the files). It is
registered through the SDK, so `.run()`, `.push()`, forms, progress, the Docker backend and the
side panel treat it as any other model.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from sieve_jupyter.modelyaml._resolve import ResolvedModel
from sieve_jupyter.runtime._entrypoints import EntrypointModel, entrypoint_model_class
from sieve_jupyter.sdk import ModelHandle, register
from sieve_jupyter.spec import Env, FunctionSpec, Metadata, spec_from_callable

__all__ = ["model_class", "model_spec", "register_model"]


def model_class(model: ResolvedModel) -> type[EntrypointModel]:
    """The model class of `model` (carrying its configuration, shipped by value)."""
    class_name = re.sub(r"\W", "_", model.name)
    if not class_name[0].isalpha():
        class_name = f"Model_{class_name}"
    return entrypoint_model_class(
        model.worker_config(),
        class_name=class_name,
        parameters=model.parameters,
        annotations=model.annotations,
        doc=model.doc,
    )


def _readme(model: ResolvedModel) -> str:
    lines = [f"Loaded from `{model.source}`."]
    if model.repository:
        lines.append(f"Code: {model.repository} at commit `{model.commit}`.")
    else:
        lines.append(f"Code: `{model.root}` (used in place).")
    for kind, function in model.functions.items():
        lines.append(f"{kind}: `{function['entrypoint']}`")
    for name, path in model.files.items():
        lines.append(f"file {name}: `{path}`")
    return "\n\n".join(lines)


def model_spec(model: ResolvedModel, cls: type[Any]) -> FunctionSpec:
    """The spec of `model`, built like a decorated model's, with the image and mounts."""
    tags = ("model.yaml", *([f"version {model.version}"] if model.version else []))
    spec = spec_from_callable(
        cls,
        kind="model",
        name=model.name,
        gpu=model.gpu,
        environment_variables=[
            Env(name=n, description="read by the model.yaml's inputs") for n in model.environment
        ],
        metadata=Metadata(
            title=model.name,
            description=model.description,
            code_url=model.repository or "",
            tags=tags,
            readme=_readme(model),
        ),
    )
    environment = dataclasses.replace(spec.environment, base_image=model.image)
    return dataclasses.replace(spec, environment=environment, mounts=tuple(model.mounts))


def register_model(
    model: ResolvedModel, *, backend: str | None = None, workers: int | None = None
) -> ModelHandle[..., Any]:
    """Register `model` with this kernel's manager and return its handle.

    Loading the same model again always starts fresh workers: its code is imported from the
    checkout by the worker, so a swap of the pickled class would not pick up changes.
    """
    cls = model_class(model)
    handle, _ = register(
        cls,
        kind="model",
        name=model.name,
        backend=backend,
        workers=workers,
        force_setup=True,
        spec=model_spec(model, cls),
    )
    assert isinstance(handle, ModelHandle)
    return handle
