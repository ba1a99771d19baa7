"""Which GPUs this machine has: `GpuInventory.detect()` asks ``nvidia-smi`` (or NVML through
``pynvml`` when installed) and honours the kernel's own ``CUDA_VISIBLE_DEVICES``; which device a
GPU kind (``T4``, ``A100-80GB`` ...) names. Tests inject an inventory; nothing here needs a GPU.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["GpuDevice", "GpuInventory", "device_matches", "parse_nvidia_smi"]

NVIDIA_SMI_QUERY = (
    "--query-gpu=index,uuid,name,memory.total",
    "--format=csv,noheader,nounits",
)


@dataclass(frozen=True)
class GpuDevice:
    """One card as the host numbers it (``index`` is what ``CUDA_VISIBLE_DEVICES`` takes)."""

    index: int
    uuid: str
    name: str
    memory_mb: int

    def describe(self) -> str:
        return f"{self.index}: {self.name} ({self.memory_mb} MiB)"


# kind -> (device-name pattern, memory range in MiB or None). A kind matches a device whose name
# matches the pattern and, where given, whose memory lies in the range. Word boundaries keep
# "L4" from matching "L40S" and "A100" from matching "A1000".
_KIND_PATTERNS: dict[str, tuple[str, tuple[int, int] | None]] = {
    "T4": (r"\bT4\b", None),
    "L4": (r"\bL4\b", None),
    "A10G": (r"\bA10G\b", None),
    "V100": (r"\bV100", None),
    "A100": (r"\bA100\b", (30_000, 100_000)),
    "A10020GB": (r"\bA100\b", (18_000, 22_000)),
    "A10080GB": (r"\bA100\b", (70_000, 100_000)),
    "L40S": (r"\bL40S\b", None),
    "H100": (r"\bH100\b", None),
    "H200": (r"\bH200\b", None),
    "B200": (r"\bB200\b", None),
}

#: kinds that may take a bigger card of the same family when their own is absent (worse rank)
_SUBSTITUTES: dict[str, tuple[str, ...]] = {
    "A10020GB": ("A100",),
}


def device_matches(kind: str, device: GpuDevice) -> int | None:
    """How well `device` serves a request for `kind`: 0 exact, 1 a substitute, None not at all."""
    for rank, candidate in enumerate((kind, *_SUBSTITUTES.get(kind, ()))):
        pattern, memory = _KIND_PATTERNS.get(candidate, (None, None))
        if pattern is None or not re.search(pattern, device.name, re.IGNORECASE):
            continue
        # memory 0 means nvidia-smi reported none ([N/A]): trust the name alone
        if memory is None or device.memory_mb == 0 or memory[0] <= device.memory_mb <= memory[1]:
            return rank
    return None


def parse_nvidia_smi(text: str) -> tuple[GpuDevice, ...]:
    """Parse ``nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits``.

    Lines that do not parse (warnings, ``[N/A]`` memory) are skipped or read as 0 MiB.
    """
    devices = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        index, uuid, memory = parts[0], parts[1], parts[-1]
        name = ",".join(parts[2:-1]).strip()
        memory_mb = int(float(memory)) if re.fullmatch(r"\d+(\.\d+)?", memory) else 0
        devices.append(GpuDevice(int(index), uuid, name, memory_mb))
    return tuple(devices)


def _visible(devices: Sequence[GpuDevice], visible: str | None) -> tuple[GpuDevice, ...]:
    """The devices a ``CUDA_VISIBLE_DEVICES`` value lets through (None: all of them)."""
    if visible is None:
        return tuple(devices)
    wanted = [v.strip() for v in visible.split(",") if v.strip()]
    chosen: list[GpuDevice] = []
    for token in wanted:
        if token.startswith("-"):  # CUDA stops at the first invalid entry
            break
        match = next(
            (
                d
                for d in devices
                if (token.isdigit() and d.index == int(token)) or d.uuid.startswith(token)
            ),
            None,
        )
        if match is None:
            break
        if match not in chosen:
            chosen.append(match)
    return tuple(chosen)


@dataclass(frozen=True)
class GpuInventory:
    """The NVIDIA GPUs this process may use, and how they were found."""

    devices: tuple[GpuDevice, ...] = ()
    #: "nvidia-smi", "nvml", "none" or "injected"
    source: str = "injected"
    #: why nothing was found, when nothing was (shown in errors)
    note: str = ""

    @classmethod
    def of(cls, devices: Iterable[GpuDevice]) -> GpuInventory:
        """An inventory of the given devices (for tests and explicit configuration)."""
        return cls(tuple(devices), "injected")

    @classmethod
    def detect(
        cls,
        *,
        run: Callable[[Sequence[str]], str] | None = None,
        environ: dict[str, str] | None = None,
    ) -> GpuInventory:
        """Find the GPUs: ``nvidia-smi`` first, NVML (pynvml) second, else an empty inventory.

        Only devices the kernel's own ``CUDA_VISIBLE_DEVICES`` allows are listed.

        Args:
            run: runs a command and returns its stdout (raises on failure); injectable for tests.
            environ: the environment to read ``CUDA_VISIBLE_DEVICES`` from (default os.environ).
        """
        env = os.environ if environ is None else environ
        visible = env.get("CUDA_VISIBLE_DEVICES")
        notes: list[str] = []
        smi = "nvidia-smi" if run is not None else shutil.which("nvidia-smi")
        if smi:
            try:
                output = (run or _run)([smi, *NVIDIA_SMI_QUERY])
                return cls(_visible(parse_nvidia_smi(output), visible), "nvidia-smi")
            except Exception as exc:  # a driver/library mismatch, no device, a timeout
                notes.append(f"nvidia-smi failed: {exc}")
        else:
            notes.append("nvidia-smi not found")
        devices = _nvml_devices(notes) if run is None else None
        if devices is not None:
            return cls(_visible(devices, visible), "nvml")
        return cls((), "none", "; ".join(notes))

    def describe(self) -> str:
        """One line per device, or why there are none."""
        if not self.devices:
            why = f" ({self.note})" if self.note else ""
            return f"no NVIDIA GPU detected{why}"
        return "; ".join(d.describe() for d in self.devices)


def _run(cmd: Sequence[str]) -> str:
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=15, check=True)
    return done.stdout


def _nvml_devices(notes: list[str]) -> tuple[GpuDevice, ...] | None:
    try:
        import pynvml
    except ImportError:
        notes.append("pynvml not installed")
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        notes.append(f"NVML failed: {exc}")
        return None
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024)
            devices.append(
                GpuDevice(
                    i,
                    uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    name.decode() if isinstance(name, bytes) else str(name),
                    int(memory),
                )
            )
        return tuple(devices)
    except Exception as exc:
        notes.append(f"NVML failed: {exc}")
        return None
    finally:
        with contextlib.suppress(Exception):  # shutting down a library we only read from
            pynvml.nvmlShutdown()
