"""GPU requests: `sieve.gpu.T4(split=2)` and friends, and the forms Sieve users write.

A `GpuRequest` names a card kind and how many workers share one card (``split``). It says
nothing about which physical device a worker gets: the manager's allocator decides that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sieve_jupyter._errors import SpecError

__all__ = [
    "GPU_KINDS",
    "MACHINE_TYPES",
    "MAX_SPLIT",
    "GpuKind",
    "GpuRequest",
    "coerce_gpu",
    "gpu",
    "resolve_gpu",
]

#: Card kinds a request may name, with a human description. ``CPU`` means no accelerator.
GPU_KINDS: dict[str, str] = {
    "T4": "NVIDIA T4 (16 GB)",
    "L4": "NVIDIA L4 (24 GB)",
    "A10G": "NVIDIA A10G (24 GB)",
    "V100": "NVIDIA V100 (16/32 GB)",
    "A100": "NVIDIA A100 (40/80 GB)",
    "A10020GB": "NVIDIA A100, a 20 GB slice (MIG 3g.20gb) or a whole card",
    "A10080GB": "NVIDIA A100 80 GB",
    "L40S": "NVIDIA L40S (48 GB)",
    "H100": "NVIDIA H100 (80 GB)",
    "H200": "NVIDIA H200 (141 GB)",
    "B200": "NVIDIA B200 (180 GB)",
    "CPU": "no accelerator",
}

#: Most workers that may share one card.
MAX_SPLIT = 8


def _canonical_kind(text: str) -> str:
    """``"a100-20gb"`` -> ``"A10020GB"``, ``"nvidia-tesla-t4"`` -> ``"T4"``."""
    key = re.sub(r"[^A-Za-z0-9]", "", text).upper()
    for prefix in ("NVIDIA", "TESLA"):
        key = key.removeprefix(prefix)
    return key


@dataclass(frozen=True)
class GpuRequest:
    """A request for one card of `kind`, shared by `split` workers (1 = a card to itself).

    Build it with the `gpu` constructors: ``sieve.gpu.T4()``, ``sieve.gpu.A100(split=2)``.

    Raises:
        SpecError: unknown kind (field ``gpu``) or a split outside 1..8 (``gpu.split``).
    """

    kind: str
    split: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise SpecError(
                "gpu", f"the kind must be a string, got {type(self.kind).__name__}.", _GPU_FIX
            )
        kind = _canonical_kind(self.kind)
        if kind not in GPU_KINDS:
            raise SpecError("gpu", f"unknown GPU {self.kind!r}.", _GPU_FIX)
        object.__setattr__(self, "kind", kind)
        if isinstance(self.split, bool) or not isinstance(self.split, int):
            raise SpecError(
                "gpu.split",
                f"must be an integer, got {type(self.split).__name__} {self.split!r}.",
                f"write e.g. sieve.gpu.{kind}(split=2).",
            )
        if not 1 <= self.split <= MAX_SPLIT:
            raise SpecError(
                "gpu.split",
                f"must be between 1 and {MAX_SPLIT}, got {self.split}.",
                f"write e.g. sieve.gpu.{kind}(split=2) to let two workers share one card.",
            )

    @property
    def is_cpu(self) -> bool:
        """True for `gpu.CPU()`: no accelerator."""
        return self.kind == "CPU"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "split": self.split}

    @classmethod
    def from_dict(cls, data: Any) -> GpuRequest:
        if not isinstance(data, dict):
            raise SpecError(
                "gpu", f"must be a mapping with kind and split, got {data!r}.", _GPU_FIX
            )
        unknown = set(data) - {"kind", "split"}
        if unknown:
            raise SpecError("gpu", f"unknown keys {sorted(unknown)}.", "use only kind and split.")
        if "kind" not in data:
            raise SpecError("gpu", "the kind is missing.", _GPU_FIX)
        return cls(kind=data["kind"], split=data.get("split", 1))

    def __str__(self) -> str:
        return self.kind if self.split == 1 else f"{self.kind}(split={self.split})"


class GpuKind:
    """A constructor in the `gpu` namespace: ``gpu.T4(split=2)`` returns a `GpuRequest`."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, split: int = 1) -> GpuRequest:
        return GpuRequest(self.kind, split)

    def __repr__(self) -> str:
        return f"sieve.gpu.{self.kind}"


class gpu:  # noqa: N801 - mirrors Sieve's `sieve.gpu` module
    """GPU constructors, as in Sieve: ``@sieve.function(name="x", gpu=sieve.gpu.L4(split=2))``.

    Each takes ``split`` (1..8), the number of workers sharing one card. ``gpu.CPU()`` asks for
    no accelerator.
    """

    T4 = GpuKind("T4")
    L4 = GpuKind("L4")
    A10G = GpuKind("A10G")
    V100 = GpuKind("V100")
    A100 = GpuKind("A100")
    A10020GB = GpuKind("A10020GB")
    A10080GB = GpuKind("A10080GB")
    L40S = GpuKind("L40S")
    H100 = GpuKind("H100")
    H200 = GpuKind("H200")
    B200 = GpuKind("B200")
    CPU = GpuKind("CPU")

    def __init__(self) -> None:
        raise TypeError("sieve.gpu is a namespace: call sieve.gpu.T4(), sieve.gpu.A100(), ...")


_GPU_FIX = (
    "pass one of "
    + ", ".join(f"sieve.gpu.{k}()" for k in GPU_KINDS)
    + ", optionally with split=N to share one card between N workers."
)


def coerce_gpu(value: Any, field: str = "gpu") -> GpuRequest | None:
    """Turn what users write for ``gpu=`` into a `GpuRequest`, or None for no accelerator.

    Accepted: a `GpuRequest` (``sieve.gpu.T4(split=2)``); a constructor not called
    (``sieve.gpu.T4``); a kind name (``"t4"``, ``"a100-20gb"``, as Sieve's older
    ``machine_type`` strings); a mapping ``{"kind": "T4", "split": 2}``; ``True`` (a T4, as
    Sieve's older ``gpu=True``); ``None``/``False``/``gpu.CPU()`` (no accelerator).

    Raises:
        SpecError: anything else, naming `field`.
    """
    if value is None or value is False:
        return None
    if value is True:
        request = GpuRequest("T4")
    elif isinstance(value, GpuRequest):
        request = value
    elif isinstance(value, GpuKind):
        request = value()
    elif isinstance(value, str):
        request = GpuRequest(value)
    elif isinstance(value, dict):
        request = GpuRequest.from_dict(value)
    else:
        raise SpecError(field, f"expected a sieve.gpu constructor, got {value!r}.", _GPU_FIX)
    return None if request.is_cpu else request


def _machine_type_name(kind: str) -> str:
    """``"A10020GB"`` -> ``"a100-20gb"``: a kind as Sieve's older SDK spelled machine types."""
    return re.sub(r"(?<=\d)(\d\dGB)$", r"-\1", kind).lower()


#: Sieve's older ``machine_type=`` strings, one per kind (``"t4"``, ``"a100-20gb"``, ``"cpu"``).
#: Any spelling `_canonical_kind` reduces to a kind is accepted; these are the ones shown.
MACHINE_TYPES: tuple[str, ...] = tuple(_machine_type_name(kind) for kind in GPU_KINDS)

_MACHINE_TYPE_FIX = (
    f"use one of {', '.join(repr(m) for m in MACHINE_TYPES)}; or, the current way, drop "
    "machine_type and pass gpu=sieve.gpu.A100() (any of sieve.gpu.T4(), sieve.gpu.L4(), ...)."
)


def _machine_kind(machine_type: Any) -> str:
    """The GPU kind a ``machine_type=`` string names (``"CPU"`` for none).

    Raises:
        SpecError: not a string, or no known kind (field ``machine_type``, listing them).
    """
    if not isinstance(machine_type, str):
        raise SpecError(
            "machine_type",
            f"must be a string, got {type(machine_type).__name__} {machine_type!r}.",
            _MACHINE_TYPE_FIX,
        )
    kind = _canonical_kind(machine_type)
    if kind not in GPU_KINDS:
        raise SpecError(
            "machine_type", f"unknown machine type {machine_type!r}.", _MACHINE_TYPE_FIX
        )
    return kind


def _describe_gpu(value: Any) -> str:
    """How the user wrote ``gpu=``, for a message (``sieve.gpu.T4(split=2)``, ``'t4'``)."""
    if isinstance(value, GpuRequest):
        return f"sieve.gpu.{value.kind}({'' if value.split == 1 else f'split={value.split}'})"
    return repr(value)


def resolve_gpu(value: Any, machine_type: Any = None) -> GpuRequest | None:
    """The `GpuRequest` for a decorator's ``gpu=`` and ``machine_type=`` together.

    ``machine_type`` is Sieve's older SDK's way to pick the machine (``"a100-20gb"``,
    ``"a100"``, ``"t4"``, see `MACHINE_TYPES`); it only decides the GPU, so nothing else
    records it. With it:

    - ``gpu=True`` or ``gpu`` unset/None: the GPU the machine type names (a GPU machine type
      asks for its GPU; ``gpu=True`` alone would mean a T4).
    - ``gpu=sieve.gpu.X(...)``, a kind string or a mapping naming the *same* kind: that
      request, split included. A *different* kind is a contradiction, refused rather than
      guessed.
    - ``gpu=False`` (or ``sieve.gpu.CPU()``) with a GPU machine type: refused, as
      contradictory; with ``machine_type="cpu"`` it is no accelerator.

    Without ``machine_type`` this is `coerce_gpu`.

    Raises:
        SpecError: a bad ``gpu`` (field ``gpu``); an unknown machine type, or one that
            contradicts ``gpu`` (field ``machine_type``), with the fix.
    """
    if machine_type is None:
        return coerce_gpu(value)
    kind = _machine_kind(machine_type)
    machine = None if kind == "CPU" else GpuRequest(kind)
    if value is None:
        return machine
    if value is True:
        if machine is None:
            raise SpecError(
                "machine_type",
                f"gpu=True asks for a GPU, but machine_type={machine_type!r} has none.",
                "drop gpu=True for a CPU machine, or name a GPU, e.g. gpu=sieve.gpu.T4().",
            )
        return machine
    requested = coerce_gpu(value)
    requested_kind = "CPU" if requested is None else requested.kind
    if requested_kind == kind:
        return requested
    if value is False:
        raise SpecError(
            "machine_type",
            f"gpu=False asks for no GPU, but machine_type={machine_type!r} is a GPU machine "
            f"({kind}).",
            f"drop machine_type for no GPU, or set gpu=sieve.gpu.{kind}() (the current way) "
            "to get it.",
        )
    raise SpecError(
        "machine_type",
        f"gpu={_describe_gpu(value)} and machine_type={machine_type!r} ask for different "
        f"machines ({requested_kind} vs {kind}).",
        f"keep one and drop machine_type: gpu=sieve.gpu.{kind}() is the current way to ask for "
        f"the {kind}, or keep gpu={_describe_gpu(value)}.",
    )
