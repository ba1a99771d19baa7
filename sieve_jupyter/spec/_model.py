"""The spec's data classes: `FunctionSpec` and its parts `Environment`, `Metadata`, `Env`.

All are frozen and validate themselves on construction (so `from_dict` checks what it reads),
normalising lists to tuples; `to_dict()` gives plain JSON types and ``from_dict(to_dict())``
gives back an equal object.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from sieve_jupyter._errors import SpecError
from sieve_jupyter.spec._cuda import resolve_cuda_version
from sieve_jupyter.spec._gpu import GpuRequest, coerce_gpu
from sieve_jupyter.spec._validate import (
    check_bool,
    check_env_name,
    check_function_name,
    check_image_reference,
    check_mount,
    check_python_version,
    check_requirement,
    check_run_command,
    check_str,
    check_str_list,
    check_system_package,
    current_python_version,
)

__all__ = ["KINDS", "Env", "Environment", "FunctionSpec", "Metadata", "canonical_json"]

#: What `FunctionSpec.kind` may be.
KINDS = ("function", "model")

#: Bumped when the meaning of a serialized spec changes; part of `Environment.content_hash`.
SPEC_VERSION = 1


def canonical_json(data: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, ASCII only."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _check_mapping(data: Any, cls: type, field_name: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpecError(
            field_name, f"must be a mapping, got {type(data).__name__} {data!r}.", "pass a dict."
        )
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(
            f"{field_name}.{unknown[0]}",
            "is not a known key.",
            f"use only {', '.join(sorted(known))}.",
        )
    return data


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass in __post_init__


@dataclass(frozen=True)
class Env:
    """An environment variable a function needs, declared by name; its value is never stored.

    The value is read from the kernel's environment when a worker starts (``default`` if unset).

    Args:
        name: the variable's name, e.g. ``"OPENAI_API_KEY"``.
        description: what it is for (shown where the value is asked for).
        default: used when the kernel's environment lacks the variable; None makes it required.
            A number is kept as its ``str()`` (``30`` -> ``"30"``, ``0.9`` -> ``"0.9"``), as
            Sieve's SDK accepted it; a bool is refused (``"True"`` or ``"1"``?).
    """

    name: str
    description: str = ""
    default: str | None = None

    def __post_init__(self) -> None:
        check_env_name(self.name, "environment_variables.name")
        check_str(self.description, "environment_variables.description")
        _set(self, "default", _env_default(self.default))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "default": self.default}

    @classmethod
    def from_dict(cls, data: Any) -> Env:
        if isinstance(data, dict) and "name" not in data:
            raise SpecError(
                "environment_variables.name", "is required.", "give the variable's name."
            )
        return cls(**_check_mapping(data, cls, "environment_variables"))


def _env_default(value: Any) -> str | None:
    """An `Env` default as the string the worker's environment gets.

    A variable's value is a string, but Sieve's SDK took numbers (``default=30``), so int and
    float become their ``str()``. A bool has no one spelling a program would expect (``"True"``,
    ``"true"``, ``"1"``), so it is refused rather than guessed.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    example = '"1"' if value is True else '"0"' if value is False else '"30"'
    raise SpecError(
        "environment_variables.default",
        f"must be a string or a number, got {type(value).__name__} {value!r}.",
        f"write the text the variable should hold, e.g. default={example}.",
    )


def coerce_envs(value: Any, field_name: str = "environment_variables") -> tuple[Env, ...]:
    """A list of `Env` (or of names, or of dicts) -> a tuple of `Env` without duplicates."""
    if value is None:
        return ()
    if isinstance(value, (str, Env, dict)) or not isinstance(value, (list, tuple)):
        raise SpecError(
            field_name,
            f"must be a list of sieve.Env, got {type(value).__name__} {value!r}.",
            f'write e.g. {field_name}=[sieve.Env(name="API_KEY", description="...")].',
        )
    envs: list[Env] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        item_field = f"{field_name}[{i}]"
        try:
            if isinstance(item, Env):
                env = item
            elif isinstance(item, str):
                env = Env(name=item)
            elif isinstance(item, dict):
                env = Env.from_dict(item)
            else:
                raise SpecError(
                    "environment_variables",
                    f"must be a sieve.Env, got {type(item).__name__} {item!r}.",
                    'write sieve.Env(name="API_KEY").',
                )
        except SpecError as exc:  # name the list entry at fault
            where = exc.field.replace("environment_variables", item_field, 1)
            raise SpecError(where, exc.problem, exc.fix) from None
        if env.name in seen:
            raise SpecError(item_field, f"{env.name!r} is declared twice.", "declare it once.")
        seen.add(env.name)
        envs.append(env)
    return tuple(envs)


@dataclass(frozen=True)
class Metadata:
    """What a function says about itself (shown in listings and exported with it), as in Sieve.

    Args:
        title: a human title.
        description: one or two sentences.
        code_url: where the code lives.
        image: a cover image as a URL or path (a `sieve.File` is accepted and stored as one).
        tags: short keywords.
        readme: Markdown shown as the function's page.
    """

    title: str = ""
    description: str = ""
    code_url: str = ""
    image: str = ""
    tags: tuple[str, ...] = ()
    readme: str = ""

    def __post_init__(self) -> None:
        for name in ("title", "description", "code_url", "readme"):
            value = getattr(self, name)
            _set(self, name, "" if value is None else check_str(value, f"metadata.{name}"))
        _set(self, "image", _image_source(self.image))
        tags = () if self.tags is None else self.tags
        _set(self, "tags", check_str_list(tags, "metadata.tags", example='["video", "ocr"]'))

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "code_url": self.code_url,
            "image": self.image,
            "tags": list(self.tags),
            "readme": self.readme,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Metadata:
        return cls(**_check_mapping(data, cls, "metadata"))


def _image_source(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    from sieve_jupyter.runtime import File  # stdlib-only; no I/O for the attributes read here

    if isinstance(value, File):
        # `.url` for a remote file; `.path` of a local file is its path (no download happens)
        return value.url if value.url is not None else value.path
    raise SpecError(
        "metadata.image",
        f"must be a URL, a path or a sieve.File, got {type(value).__name__} {value!r}.",
        'write e.g. image=sieve.File(url="https://.../cover.png").',
    )


def coerce_metadata(value: Any) -> Metadata:
    if value is None:
        return Metadata()
    if isinstance(value, Metadata):
        return value
    if isinstance(value, dict):
        return Metadata.from_dict(value)
    raise SpecError(
        "metadata",
        f"must be a sieve.Metadata, got {type(value).__name__} {value!r}.",
        'write metadata=sieve.Metadata(title="...", description="...").',
    )


@dataclass(frozen=True)
class Environment:
    """What determines a worker's container image, and nothing else.

    Code, name, GPU kind and metadata are not part of it, so editing them never rebuilds an
    image: the image tag is derived from `content_hash()`.
    """

    python_version: str = field(default_factory=current_python_version)
    python_packages: tuple[str, ...] = ()
    system_packages: tuple[str, ...] = ()
    #: a full CUDA release (see `CUDA_VERSIONS`), or None for a CPU-only base image
    cuda_version: str | None = None
    run_commands: tuple[str, ...] = ()
    #: the image to build on (a model.yaml's ``runtime.image``); None lets the backend choose
    #: (official Python or CUDA images, or its configured base). It must provide the kernel's
    #: Python, or apt to install it.
    base_image: str | None = None

    def __post_init__(self) -> None:
        _set(self, "python_version", check_python_version(self.python_version))
        _set(
            self,
            "python_packages",
            check_str_list(
                self.python_packages,
                "python_packages",
                check_requirement,
                example='["numpy>=1.26"]',
            ),
        )
        _set(
            self,
            "system_packages",
            check_str_list(
                self.system_packages, "system_packages", check_system_package, example='["ffmpeg"]'
            ),
        )
        if self.cuda_version is not None:
            _set(self, "cuda_version", resolve_cuda_version(self.cuda_version))
        _set(
            self,
            "run_commands",
            check_str_list(
                self.run_commands, "run_commands", check_run_command, example='["echo hi"]'
            ),
        )
        if self.base_image is not None:
            _set(self, "base_image", check_image_reference(self.base_image, "base_image"))

    @property
    def needs_cuda(self) -> bool:
        """Whether the image must start from a CUDA base."""
        return self.cuda_version is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "python_version": self.python_version,
            "python_packages": list(self.python_packages),
            "system_packages": list(self.system_packages),
            "cuda_version": self.cuda_version,
            "run_commands": list(self.run_commands),
        }
        # Only when set: every environment without one keeps the hash (and image tag) it had
        # before the field existed.
        if self.base_image is not None:
            data["base_image"] = self.base_image
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Environment:
        data = _check_mapping(data, cls, "environment")
        return cls(**data)

    def content_hash(self) -> str:
        """A stable sha256 (hex) of this environment's canonical JSON."""
        payload = canonical_json(
            {"spec_version": SPEC_VERSION, **self.to_dict(), "needs_cuda": self.needs_cuda}
        )
        return hashlib.sha256(payload.encode("ascii")).hexdigest()


def _json_clean(value: Any, field_name: str) -> dict[str, Any]:
    """A JSON Schema dict, copied through JSON so tuples become lists and round trips are exact."""
    if not isinstance(value, dict):
        raise SpecError(
            field_name, f"must be a JSON Schema object (a dict), got {value!r}.", "pass a dict."
        )
    try:
        cleaned: dict[str, Any] = json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise SpecError(
            field_name, f"is not JSON-serialisable ({exc}).", "use plain JSON values."
        ) from None
    return cleaned


@dataclass(frozen=True, eq=True)
class FunctionSpec:
    """Everything known about a decorated function or model, as validated, JSON-able data.

    Built by `spec_from_callable`; read by backends, the manager, widgets, export and the HTTP
    server. ``inputs`` is a JSON Schema object of the parameters, ``output`` the JSON Schema of
    the return value (of each yielded item for a generator).
    """

    name: str
    kind: str = "function"
    environment: Environment = field(default_factory=Environment)
    gpu: GpuRequest | None = None
    env: tuple[Env, ...] = ()
    metadata: Metadata = field(default_factory=Metadata)
    restart_on_error: bool = True
    inputs: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    output: dict[str, Any] = field(default_factory=dict)
    is_generator: bool = False
    signature: str = "()"
    doc: str = ""
    #: absolute host paths the worker reads besides its pickled code (a model.yaml's checkout
    #: and files), each ``PATH`` or ``PATH:ro``: a container gets each bind-mounted at the same
    #: path, so paths in the code stay valid; local workers see them already
    mounts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_function_name(self.name)
        if self.kind not in KINDS:
            raise SpecError(
                "kind",
                f"must be 'function' or 'model', got {self.kind!r}.",
                "use sieve.function or sieve.Model.",
            )
        if not isinstance(self.environment, Environment):
            raise SpecError(
                "environment",
                f"must be an Environment, got {self.environment!r}.",
                "build it with Environment(...).",
            )
        _set(self, "gpu", coerce_gpu(self.gpu))
        _set(self, "env", coerce_envs(self.env))
        _set(self, "metadata", coerce_metadata(self.metadata))
        check_bool(self.restart_on_error, "restart_on_error")
        check_bool(self.is_generator, "is_generator")
        _set(self, "inputs", _json_clean(self.inputs, "inputs"))
        _set(self, "output", _json_clean(self.output, "output"))
        check_str(self.signature, "signature")
        check_str(self.doc, "doc")
        _set(
            self,
            "mounts",
            check_str_list(self.mounts, "mounts", check_mount, example='["/data:ro"]'),
        )

    __hash__ = None  # type: ignore[assignment]  # holds dicts; compare with ==, key by name

    @property
    def environment_hash(self) -> str:
        return self.environment.content_hash()

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec_version": SPEC_VERSION,
            "name": self.name,
            "kind": self.kind,
            "environment": self.environment.to_dict(),
            "gpu": self.gpu.to_dict() if self.gpu else None,
            "env": [e.to_dict() for e in self.env],
            "metadata": self.metadata.to_dict(),
            "restart_on_error": self.restart_on_error,
            "inputs": json.loads(json.dumps(self.inputs)),
            "output": json.loads(json.dumps(self.output)),
            "is_generator": self.is_generator,
            "signature": self.signature,
            "doc": self.doc,
            # only when there are some, so specs of decorated functions read as before
            **({"mounts": list(self.mounts)} if self.mounts else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> FunctionSpec:
        """Rebuild (and re-validate) a spec from `to_dict()` output.

        Raises:
            SpecError: a key is unknown or missing, or a value is invalid.
        """
        if not isinstance(data, dict):
            raise SpecError(
                "spec",
                f"must be a mapping, got {type(data).__name__}.",
                "pass the dict from to_dict().",
            )
        data = dict(data)
        version = data.pop("spec_version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise SpecError(
                "spec_version",
                f"is {version!r}; this sieve-jupyter reads version {SPEC_VERSION}.",
                "re-create the spec with this version of sieve-jupyter.",
            )
        _check_mapping(data, cls, "spec")
        if "name" not in data:
            raise SpecError("name", "is required.", "give the function a name.")
        if "environment" in data:
            data["environment"] = Environment.from_dict(data["environment"])
        if data.get("gpu") is not None:
            data["gpu"] = GpuRequest.from_dict(data["gpu"])
        if "metadata" in data:
            data["metadata"] = Metadata.from_dict(data["metadata"])
        return cls(**data)

    def to_json(self, *, indent: int | None = None) -> str:
        if indent is None:
            return canonical_json(self.to_dict())
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def to_yaml(self) -> str:
        from sieve_jupyter.spec._yaml import spec_to_yaml

        return spec_to_yaml(self)

    @classmethod
    def from_yaml(cls, text: str) -> FunctionSpec:
        from sieve_jupyter.spec._yaml import spec_from_yaml

        return spec_from_yaml(text)

    @classmethod
    def from_json(cls, text: str | bytes) -> FunctionSpec:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise SpecError(
                "spec", f"is not valid JSON ({exc}).", "pass the text from to_json()."
            ) from None
        return cls.from_dict(data)
