"""GPU inventory parsing and the allocator, with injected inventories (this machine has no GPU)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence

import pytest

from sieve_jupyter import GpuUnavailableError
from sieve_jupyter.backends import GpuAssignment
from sieve_jupyter.manager._gpu import GpuAllocator, GpuFallbackWarning
from sieve_jupyter.manager._gpu_inventory import (
    GpuDevice,
    GpuInventory,
    device_matches,
    parse_nvidia_smi,
)
from sieve_jupyter.spec import GPU_KINDS, gpu

SMI_OUTPUT = """\
0, GPU-aaaa-0000, Tesla T4, 15360
1, GPU-bbbb-1111, Tesla T4, 15360
2, GPU-cccc-2222, NVIDIA A100-SXM4-40GB, 40960
3, GPU-dddd-3333, NVIDIA L4, 23034
"""

T4_0 = GpuDevice(0, "GPU-aaaa-0000", "Tesla T4", 15360)
T4_1 = GpuDevice(1, "GPU-bbbb-1111", "Tesla T4", 15360)
A100 = GpuDevice(2, "GPU-cccc-2222", "NVIDIA A100-SXM4-40GB", 40960)
L4 = GpuDevice(3, "GPU-dddd-3333", "NVIDIA L4", 23034)


def allocator(*devices: GpuDevice, **kwargs: bool) -> GpuAllocator:
    return GpuAllocator(GpuInventory.of(devices), **kwargs)


# --- inventory --------------------------------------------------------------------------------


def test_parse_nvidia_smi() -> None:
    assert parse_nvidia_smi(SMI_OUTPUT) == (T4_0, T4_1, A100, L4)


def test_parse_skips_noise_and_unknown_memory() -> None:
    text = "WARNING: something\n\n0, GPU-x, NVIDIA H100 80GB HBM3, [N/A]\n"
    assert parse_nvidia_smi(text) == (GpuDevice(0, "GPU-x", "NVIDIA H100 80GB HBM3", 0),)


def test_detect_uses_nvidia_smi_query() -> None:
    seen: list[Sequence[str]] = []

    def run(cmd: Sequence[str]) -> str:
        seen.append(cmd)
        return SMI_OUTPUT

    inventory = GpuInventory.detect(run=run, environ={})
    assert inventory.source == "nvidia-smi"
    assert inventory.devices == (T4_0, T4_1, A100, L4)
    assert "--query-gpu=index,uuid,name,memory.total" in seen[0]
    assert "--format=csv,noheader,nounits" in seen[0]


@pytest.mark.parametrize(
    ("visible", "indexes"),
    [("2,0", (2, 0)), ("GPU-dddd", (3,)), ("", ()), ("-1", ()), ("1,7,2", (1,))],
)
def test_detect_honours_cuda_visible_devices(visible: str, indexes: tuple[int, ...]) -> None:
    inventory = GpuInventory.detect(
        run=lambda cmd: SMI_OUTPUT, environ={"CUDA_VISIBLE_DEVICES": visible}
    )
    assert tuple(d.index for d in inventory.devices) == indexes


def test_detect_failure_is_an_empty_inventory() -> None:
    def run(cmd: Sequence[str]) -> str:
        raise subprocess.CalledProcessError(9, cmd, "NVIDIA-SMI has failed")

    inventory = GpuInventory.detect(run=run, environ={})
    assert inventory.devices == ()
    assert "nvidia-smi failed" in inventory.describe()


def test_detect_on_this_machine_does_not_raise() -> None:
    inventory = GpuInventory.detect()
    assert isinstance(inventory.devices, tuple)
    if not inventory.devices:
        assert inventory.describe().startswith("no NVIDIA GPU detected")


# --- kinds match device names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "memory", "rank"),
    [
        ("T4", "Tesla T4", 15360, 0),
        ("T4", "NVIDIA T4", 15360, 0),
        ("A100", "NVIDIA A100-SXM4-40GB", 40960, 0),
        ("A100", "NVIDIA A100 80GB PCIe", 81920, 0),
        ("A100", "NVIDIA A100-SXM4-40GB MIG 3g.20gb", 19968, None),
        ("A10020GB", "NVIDIA A100-SXM4-40GB MIG 3g.20gb", 19968, 0),
        ("A10020GB", "NVIDIA A100-SXM4-40GB", 40960, 1),  # a whole card serves a 20 GB request
        ("A10080GB", "NVIDIA A100-SXM4-80GB", 81920, 0),
        ("A10080GB", "NVIDIA A100-SXM4-40GB", 40960, None),
        ("L4", "NVIDIA L4", 23034, 0),
        ("L4", "NVIDIA L40S", 46068, None),
        ("L40S", "NVIDIA L40S", 46068, 0),
        ("A10G", "NVIDIA A10G", 23028, 0),
        ("A100", "NVIDIA A10G", 23028, None),
        ("V100", "Tesla V100-SXM2-16GB", 16384, 0),
        ("H100", "NVIDIA H100 80GB HBM3", 81559, 0),
        ("H200", "NVIDIA H200", 143771, 0),
        ("H100", "NVIDIA H200", 143771, None),
        ("T4", "NVIDIA GeForce RTX 4090", 24564, None),
    ],
)
def test_device_matches(kind: str, name: str, memory: int, rank: int | None) -> None:
    assert device_matches(kind, GpuDevice(0, "GPU-x", name, memory)) == rank


def test_every_gpu_kind_can_match_something() -> None:
    from sieve_jupyter.manager._gpu_inventory import _KIND_PATTERNS

    assert set(GPU_KINDS) - {"CPU"} == set(_KIND_PATTERNS)


# --- allocation -------------------------------------------------------------------------------


def test_acquire_gives_a_matching_card() -> None:
    alloc = allocator(T4_0, A100)
    assignment = alloc.acquire(gpu.A100(), "w1")
    assert assignment == GpuAssignment(device_indexes=(2,), device_uuids=("GPU-cccc-2222",))
    assert assignment.visible_devices == "2"


def test_no_request_or_cpu_gets_nothing() -> None:
    alloc = allocator()
    assert alloc.acquire(None, "w1") is None
    assert alloc.acquire(gpu.CPU(), "w2") is None


def test_split_shares_one_card() -> None:
    alloc = allocator(T4_0, T4_1)
    request = gpu.T4(split=2)
    a = alloc.acquire(request, "w1")
    b = alloc.acquire(request, "w2")
    c = alloc.acquire(request, "w3")
    assert a is not None and b is not None and c is not None
    assert a.device_indexes == b.device_indexes == (0,)  # packed onto one card
    assert c.device_indexes == (1,)


def test_without_split_each_worker_gets_its_own_card() -> None:
    alloc = allocator(T4_0, T4_1)
    a = alloc.acquire(gpu.T4(), "w1")
    b = alloc.acquire(gpu.T4(), "w2")
    assert a is not None and b is not None
    assert {a.device_indexes, b.device_indexes} == {(0,), (1,)}


def test_exhaustion_names_request_and_users() -> None:
    alloc = allocator(T4_0)
    alloc.acquire(gpu.T4(split=2), "w1")
    alloc.acquire(gpu.T4(split=2), "w2")
    with pytest.raises(GpuUnavailableError) as info:
        alloc.acquire(gpu.T4(split=2), "w3")
    message = str(info.value)
    assert "T4(split=2)" in message
    assert "w1" in message and "w2" in message
    assert "Tesla T4" in message


def test_different_requests_do_not_share_a_card() -> None:
    alloc = allocator(T4_0)
    alloc.acquire(gpu.T4(split=2), "w1")
    with pytest.raises(GpuUnavailableError):
        alloc.acquire(gpu.T4(split=4), "w2")
    with pytest.raises(GpuUnavailableError):
        alloc.acquire(gpu.T4(), "w3")


def test_release_frees_the_slot_and_the_card() -> None:
    alloc = allocator(T4_0)
    alloc.acquire(gpu.T4(split=2), "w1")
    alloc.acquire(gpu.T4(split=2), "w2")
    alloc.release("w1")
    assert alloc.acquire(gpu.T4(split=2), "w3") is not None
    alloc.release("w2")
    alloc.release("w3")
    # the card is free again, for any request
    assert alloc.acquire(gpu.T4(), "w4") is not None
    alloc.release("unknown")  # no error


def test_acquire_is_idempotent_per_owner() -> None:
    alloc = allocator(T4_0, T4_1)
    first = alloc.acquire(gpu.T4(), "w1")
    assert alloc.acquire(gpu.T4(), "w1") == first
    with pytest.raises(ValueError, match="w1"):
        alloc.acquire(gpu.T4(split=2), "w1")


def test_missing_kind_lists_what_exists() -> None:
    alloc = allocator(T4_0, L4)
    with pytest.raises(GpuUnavailableError) as info:
        alloc.acquire(gpu.H100(), "w1")
    message = str(info.value)
    assert "H100" in message
    assert "0: Tesla T4" in message and "3: NVIDIA L4" in message


def test_no_gpu_at_all() -> None:
    alloc = GpuAllocator(GpuInventory((), "none", "nvidia-smi not found"))
    with pytest.raises(GpuUnavailableError) as info:
        alloc.acquire(gpu.T4(), "w1")
    assert "T4" in str(info.value)
    assert "no NVIDIA GPU detected" in str(info.value)
    assert "nvidia-smi not found" in str(info.value)


def test_cpu_fallback_warns_instead() -> None:
    alloc = allocator(cpu_fallback=True)
    with pytest.warns(GpuFallbackWarning, match="T4"):
        assert alloc.acquire(gpu.T4(), "w1") is None


def test_exact_kind_is_preferred_over_a_substitute() -> None:
    mig = GpuDevice(5, "MIG-1", "NVIDIA A100-SXM4-40GB MIG 3g.20gb", 19968)
    alloc = allocator(A100, mig)
    assignment = alloc.acquire(gpu.A10020GB(), "w1")
    assert assignment is not None and assignment.device_indexes == (5,)
    fallback = alloc.acquire(gpu.A10020GB(), "w2")
    assert fallback is not None and fallback.device_indexes == (2,)


def test_assignments_listing() -> None:
    alloc = allocator(T4_0)
    alloc.acquire(gpu.T4(split=2), "w1")
    assert alloc.assignments() == {"w1": {"index": 0, "name": "Tesla T4", "request": "T4(split=2)"}}


def test_allocation_is_thread_safe() -> None:
    devices = [GpuDevice(i, f"GPU-{i}", "Tesla T4", 15360) for i in range(4)]
    alloc = GpuAllocator(GpuInventory.of(devices))
    request = gpu.T4(split=8)
    results: list[int] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(8):
            try:
                got = alloc.acquire(request, f"w{n}-{i}")
            except GpuUnavailableError as exc:
                with lock:
                    errors.append(exc)
            else:
                assert got is not None
                with lock:
                    results.append(got.device_indexes[0])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 32  # 4 cards x 8 slots, never more
    assert len(errors) == 8
    assert all(results.count(i) == 8 for i in range(4))
