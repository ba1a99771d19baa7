"""Which worker gets which card, and the manager's view of GPUs.

`GpuAllocator` hands out cards to workers: a request with ``split=N`` lets N workers with that
same request share one card; a card in use by one request is not given to another.
`ManagerGpus` is the manager's allocator, made on first use (so ``nvidia-smi`` runs only when a
function asks for a GPU) and following ``sieve.configure(gpu_fallback=...)`` as it changes.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sieve_jupyter._errors import GpuFallbackWarning, GpuUnavailableError
from sieve_jupyter.backends._base import GpuAssignment
from sieve_jupyter.manager._gpu_inventory import GpuDevice, GpuInventory, device_matches
from sieve_jupyter.spec import GpuRequest

if TYPE_CHECKING:
    from sieve_jupyter._config import Config
    from sieve_jupyter.spec import FunctionSpec

__all__ = ["GpuAllocator", "GpuFallbackWarning", "ManagerGpus"]


@dataclass
class _Card:
    device: GpuDevice
    request: GpuRequest | None = None
    owners: list[str] = field(default_factory=list)

    @property
    def free_slots(self) -> int:
        if self.request is None:
            return 0
        return self.request.split - len(self.owners)


class GpuAllocator:
    """Hands out cards to workers; thread-safe.

    Args:
        inventory: the devices to allocate; detected on first use when None.
        cpu_fallback: when no card fits, warn (`GpuFallbackWarning`) and run on the CPU instead
            of raising `GpuUnavailableError`.
    """

    def __init__(
        self, inventory: GpuInventory | None = None, *, cpu_fallback: bool = False
    ) -> None:
        self._inventory = inventory
        #: read at each `acquire`, so the manager can follow `sieve.configure(gpu_fallback=...)`
        self.cpu_fallback = cpu_fallback
        self._lock = threading.Lock()
        self._cards: list[_Card] | None = None
        self._owners: dict[str, tuple[_Card, GpuRequest]] = {}

    @property
    def inventory(self) -> GpuInventory:
        with self._lock:
            return self._ensure_inventory()

    def _ensure_inventory(self) -> GpuInventory:
        if self._inventory is None:
            self._inventory = GpuInventory.detect()
        if self._cards is None:
            self._cards = [_Card(d) for d in self._inventory.devices]
        return self._inventory

    def acquire(self, request: GpuRequest | None, owner: str) -> GpuAssignment | None:
        """Give `owner` (a worker id) a card for `request`.

        Returns None for no request (or ``gpu.CPU()``), and when falling back to the CPU.
        Acquiring again for the same owner and request returns its current card.

        Raises:
            GpuUnavailableError: no card of that kind exists, or all are taken; the message
                names the request and lists what this machine has.
            ValueError: `owner` already holds a card for a different request.
        """
        if request is None or request.is_cpu:
            return None
        with self._lock:
            inventory = self._ensure_inventory()
            assert self._cards is not None
            held = self._owners.get(owner)
            if held is not None:
                if held[1] != request:
                    raise ValueError(f"worker {owner!r} already holds a GPU for {held[1]}")
                return _assignment(held[0].device)
            card = self._choose(request)
            if card is None:
                problem = self._problem(request, inventory)
                if self.cpu_fallback:
                    warnings.warn(
                        f"{problem} Running on the CPU instead (cpu fallback is on).",
                        GpuFallbackWarning,
                        stacklevel=2,
                    )
                    return None
                raise GpuUnavailableError(problem)
            card.request = request
            card.owners.append(owner)
            self._owners[owner] = (card, request)
            return _assignment(card.device)

    def release(self, owner: str) -> None:
        """Free what `owner` holds (nothing happens for an unknown owner)."""
        with self._lock:
            held = self._owners.pop(owner, None)
            if held is None:
                return
            card = held[0]
            card.owners.remove(owner)
            if not card.owners:
                card.request = None

    def assignments(self) -> dict[str, dict[str, Any]]:
        """owner -> ``{"index", "name", "request"}``, for listings."""
        with self._lock:
            return {
                owner: {"index": card.device.index, "name": card.device.name, "request": str(req)}
                for owner, (card, req) in self._owners.items()
            }

    def _choose(self, request: GpuRequest) -> _Card | None:
        assert self._cards is not None
        best: tuple[int, int, int] | None = None
        chosen: _Card | None = None
        for card in self._cards:
            rank = device_matches(request.kind, card.device)
            if rank is None:
                continue
            if card.request is None:
                key = (1, rank, card.device.index)  # a free card, after partly used ones
            elif card.request == request and card.free_slots > 0:
                key = (0, rank, card.device.index)  # share a card this request already splits
            else:
                continue
            if best is None or key < best:
                best, chosen = key, card
        return chosen

    def _problem(self, request: GpuRequest, inventory: GpuInventory) -> str:
        assert self._cards is not None
        asked = f"gpu: asked for {request} ({request.kind}"
        asked += f", {request.split} workers per card)" if request.split > 1 else ")"
        matching = [c for c in self._cards if device_matches(request.kind, c.device) is not None]
        fix = (
            "Run where such a card is, ask for one this machine has, or drop gpu= to run on the "
            "CPU."
        )
        if not inventory.devices:
            return f"{asked}, but {inventory.describe()}. {fix}"
        if not matching:
            return (
                f"{asked}, but this machine has no such card; it has: {inventory.describe()}. "
                + fix
            )
        busy = "; ".join(
            f"{c.device.index}: {c.device.name} used by {', '.join(c.owners)} for {c.request}"
            for c in matching
        )
        return (
            f"{asked}, but every matching card is taken ({busy}). Stop a worker, or use a "
            "larger split to share cards."
        )


def _assignment(device: GpuDevice) -> GpuAssignment:
    return GpuAssignment(
        device_indexes=(device.index,), device_uuids=(device.uuid,) if device.uuid else ()
    )


class ManagerGpus:
    """The manager's view of GPUs: an allocator built on first use (nvidia-smi runs once)."""

    def __init__(self, cfg: Config) -> None:
        self._config = cfg
        self._allocator: GpuAllocator | None = None
        self._lock = threading.Lock()

    @property
    def allocator(self) -> GpuAllocator:
        with self._lock:
            if self._allocator is None:
                self._allocator = GpuAllocator()
            # Follow the setting as it is now: `sieve.configure(gpu_fallback="cpu")` after a
            # first GPU error must take effect (the allocator outlives the setting it saw).
            self._allocator.cpu_fallback = self._config.gpu_fallback == "cpu"
            return self._allocator

    def acquire_for(self, spec: FunctionSpec, worker_id: str) -> GpuAssignment | None:
        if spec.gpu is None or spec.gpu.is_cpu:
            return None
        return self.allocator.acquire(spec.gpu, worker_id)

    def release(self, worker_id: str) -> None:
        if self._allocator is not None:
            self._allocator.release(worker_id)

    def check_workers(self, spec: FunctionSpec, workers: int) -> None:
        """Check that each of `workers` workers of `spec` can have its card (or share) now,
        before any job is queued: finding out at the second worker would fail a push after its
        job already ran on the first.

        Raises:
            GpuUnavailableError: naming the request, how many could be had, and the fix.
        """
        if spec.gpu is None or spec.gpu.is_cpu:
            return
        probes: list[str] = []
        try:
            for index in range(workers):
                probes.append(f"{spec.name}-preflight-{index}")
                try:
                    assignment = self.acquire_for(spec, probes[-1])
                except GpuUnavailableError as exc:
                    if index == 0:
                        raise
                    cards = self.allocator.inventory.describe()
                    raise GpuUnavailableError(
                        f"gpu: workers={workers} each need a {spec.gpu} card (or a share of "
                        f"one), but only {index} can be had here ({cards}). Fix: "
                        f"workers={index}, or a split such as "
                        f"sieve.gpu.{spec.gpu.kind}(split={workers})."
                    ) from exc
                if assignment is None:
                    return  # running on the CPU instead (already warned)
        finally:
            for probe in probes:
                self.release(probe)
