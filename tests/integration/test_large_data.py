"""Large arguments and results cross through shared memory, and nothing of it outlives its use;
files cross into and out of containers with their content.

A worker maps the kernel's segments once and rebuilds arrays on them; its results come back the
same way. The tests look at what a user (or an operator) can see from outside: /proc/<pid>/fd
and /proc/<pid>/maps of both the kernel and its worker, and /dev/shm.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest
from support import Unique, wait_for

import sieve_jupyter as sieve
from sieve_jupyter.runtime import _shm

pytestmark = pytest.mark.skipif(not _shm.available(), reason="needs memfd (Linux)")

MiB = 1 << 20


def resources(sockets: bool = True) -> dict[str, Any]:
    """What this process holds that a leak would grow: descriptors (sockets among them unless
    `sockets` is False: a Docker client keeps a pool of its own) and shared mappings."""
    with open("/proc/self/maps") as maps:
        mapped = sorted(
            {
                line.split()[-2] if line.rstrip().endswith("(deleted)") else line.split()[-1]
                for line in maps
                if "/memfd:sieve-" in line
            }
        )
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # (the listing's own descriptor)
    kept = [t for t in targets if sockets or not t.startswith("socket:")]
    return {
        "fds": len(kept),
        "memfds": sum(t.startswith("/memfd:") for t in kept),
        "mapped": mapped,
    }


def dev_shm() -> list[str]:
    """Named shared memory this package could have left: its own names, and Python's
    `multiprocessing.shared_memory` ones (other programs on the machine come and go)."""
    names = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    return sorted(n for n in names if n.startswith(("sieve", "psm_")))


@pytest.fixture
def quick_retirement(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Idle segments are retired after a moment (the default keeps them ten seconds), and the
    job history keeps few jobs."""
    monkeypatch.setenv("SIEVE_SHM_KEEP_SECONDS", "0.2")
    previous = sieve.config.job_history
    sieve.configure(job_history=20)
    yield
    sieve.configure(job_history=previous)


def test_arrays_cross_in_shared_memory_both_ways(unique: Unique) -> None:
    np = pytest.importorskip("numpy")

    @sieve.function(name=unique("scale"))
    def scale(frame: Any, factor: float) -> Any:
        with open("/proc/self/maps") as maps:
            shared = [line.split()[0] for line in maps if "/memfd:sieve-" in line]
        start = frame.__array_interface__["data"][0]
        in_shared = any(int(a, 16) <= start < int(b, 16) for a, b in (r.split("-") for r in shared))
        frame *= factor  # arguments are writable, as they always were
        return frame, in_shared

    original = np.random.default_rng(3).random((1080, 1920, 3)).astype(np.float32)
    result, arrived_in_shared_memory = scale.run(original, 2.0)
    assert arrived_in_shared_memory  # the worker did not copy it out of the socket
    assert np.array_equal(result, original * 2.0)
    assert result.flags.writeable
    pushed = [scale.push(original, float(i)) for i in range(6)]
    assert all(np.array_equal(f.result()[0], original * i) for i, f in enumerate(pushed))


@pytest.mark.usefixtures("quick_retirement")
def test_a_thousand_large_calls_with_crashes_and_cancels_leak_nothing(
    backend: str, unique: Unique
) -> None:
    crash_at = {130, 600} if backend == "docker" else {130, 420, 777}  # (none cancelled)
    # (On the Ray tier's cluster the worker lands on either node: on the other one, its large
    # calls wait on Ray's transfers between the nodes (docs/ray.md, "Limits").)

    @sieve.function(name=unique("bulk"), backend=backend)
    def bulk(i: int, data: Any) -> Any:
        import os
        import time

        if i < 0:  # what this worker holds: its descriptors and shared mappings
            with open("/proc/self/maps") as maps:
                mapped = sum(1 for line in maps if "/memfd:sieve-" in line)
            return {"pid": os.getpid(), "fds": len(os.listdir("/proc/self/fd")), "mapped": mapped}
        if i in crash_at:
            os._exit(1)
        if i % 100 == 50:
            time.sleep(30)  # (cancelled while it runs)
        return data if i % 2 else bytes(data[:16])  # half the results are large too

    def worker_resources() -> dict[str, Any]:
        return bulk.run(-1, memoryview(b""))

    local = backend == "local"
    for _ in range(25):  # (results of earlier tests leave the job history)
        worker_before = worker_resources()
    gc.collect()
    kernel_before, shm_before = resources(sockets=local), dev_shm()
    outcomes: dict[int, Any] = {}
    for start in range(0, 1000, 100):
        futures = {
            i: bulk.push(i, memoryview(bytearray(os.urandom(16)) * (MiB // 16)))
            for i in range(start, start + 100)
        }
        running = futures[start + 50]
        wait_for(running.running)
        futures[start + 57].cancel()  # waiting behind the running one: never runs
        running.cancel()  # interrupted in its worker
        for i, future in futures.items():
            outcomes[i] = _outcome(future)
        del futures, running, future  # (the last one holds a large result)
    crashed = {i for i, o in outcomes.items() if isinstance(o, sieve.WorkerCrashedError)}
    cancelled = {i for i, o in outcomes.items() if isinstance(o, sieve.JobCancelledError)}
    lost: set[int] = set()
    if backend == "ray":
        # A Ray actor answers a call after it has moved on: dying at a job's start can take
        # the answers of the jobs before it with it (the one before, on a quiet machine; a
        # run of them when the actor's answers wait for a CPU). The worker's journal delivers
        # small outcomes all the same; a large one (left to Ray's object store) is not kept,
        # and its job says so (docs/ray.md). Jobs are pushed a hundred at a time, each burst
        # settled before the next: what a crash can take is in its own burst, before it.
        lost = crashed - crash_at
        assert lost <= {i for c in crash_at for i in range(c - c % 100, c) if i % 2}, lost
        for i in lost:
            assert "its result was lost" in str(outcomes[i]), outcomes[i]
            assert "It was not run again" in str(outcomes[i])
        crashed -= lost
    assert crashed == crash_at
    assert cancelled == {i for i in range(1000) if i % 100 in (50, 57)}
    for i, outcome in outcomes.items():
        if i not in crashed | cancelled | lost:
            assert len(outcome) == (MiB if i % 2 else 16)
    del outcomes, outcome
    for i in range(25):  # push the last large results out of the job history
        bulk.run(i * 2, memoryview(b"x" * 32))
    gc.collect()
    # everything is released, then retired once idle: back to where both sides started
    settled(lambda: grown(kernel_before, resources(sockets=local)))
    # (a Ray worker's descriptors include Ray's own connections, opened as it needs them: a
    # replacement actor was seen holding two more than the first; its mappings still count)
    keys = ("mapped",) if backend == "ray" else ("fds", "mapped")
    settled(lambda: grown(_comparable(worker_before, keys), _comparable(worker_resources(), keys)))
    assert set(dev_shm()) <= set(shm_before)


def grown(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What `after` holds that `before` did not: more descriptors or mappings, or mappings of
    segments made since. (Segments earlier tests left to retire may go meanwhile: no leak.)"""
    more: dict[str, Any] = {}
    for key, now in after.items():
        if isinstance(now, int) and now > before[key]:
            more[key] = (before[key], now)
        elif isinstance(now, list) and set(now) - set(before[key]):
            more[key] = sorted(set(now) - set(before[key]))
    return more


def settled(measure: Any) -> None:
    """Wait until `measure()` is empty (nothing has grown); if it never is, show what grew."""
    try:
        wait_for(lambda: not measure())
    except AssertionError:
        assert measure() == {}


def _comparable(worker: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    # (the worker may be a replacement: it is compared with the first one in the same state)
    return {key: worker[key] for key in keys}


def _outcome(future: Any) -> Any:
    try:
        return future.result(timeout=120)
    except Exception as exc:  # noqa: BLE001 - compared by the test
        if isinstance(exc, sieve.JobCancelledError) or future.cancelled():
            return sieve.JobCancelledError(str(exc))
        return exc


def test_stopping_a_function_frees_the_kernels_segments_at_once(unique: Unique) -> None:
    @sieve.function(name=unique("slow"))
    def slow(data: Any) -> int:
        import time

        time.sleep(30)
        return len(data)

    @sieve.function(name=unique("other"))
    def other(data: Any) -> int:
        return len(data)

    other.run(memoryview(bytearray(2 * MiB)))  # (the process has its notice thread)
    before = resources()
    pending = [slow.push(memoryview(bytearray(2 * MiB))) for _ in range(5)]
    wait_for(pending[0].running)
    slow.stop()  # a running job, queued ones: all cancelled; the worker goes
    assert all(f.cancelled() for f in pending)
    # (compared by what grew: a segment an earlier test left to retire may go meanwhile,
    # which made an equality fail)
    keys = ("mapped", "memfds")
    settled(lambda: grown(_comparable(before, keys), _comparable(resources(), keys)))


def test_the_job_history_does_not_pin_large_results(unique: Unique) -> None:
    """A result rebuilt on the worker's shared memory lives as long as the user holds it (its
    future or the value), not as long as the job history remembers the job: each one goes
    back to the worker once dropped, and the history still lists the job, finished."""
    pytest.importorskip("numpy")
    from sieve_jupyter.manager import get_manager

    @sieve.function(name=unique("big"))
    def big(n: int) -> Any:
        import numpy as np

        print("made", n)
        return np.ones(n, dtype=np.uint8)  # (rebuilt on the shared pages, where `bytes` is a copy)

    manager = get_manager()
    for _ in range(7):
        assert big.run(3 * MiB).sum() == 3 * MiB
    pool = manager.record(big.name).pool
    assert pool is not None
    (worker,) = pool.workers.values()
    # The results were dropped, so the kernel holds none of the worker's memory (a history
    # that kept them would hold seven). The reader thread that settled the last one lets go
    # of it when it is done with it, which may be just after `.run()` returned.
    wait_for(lambda: worker.link.counts()["held"] == 0)

    held = big.push(3 * MiB)
    held.result()
    dropped = big.push(3 * MiB)
    dropped_id = dropped.job_id
    assert len(dropped.result()) == 3 * MiB
    assert worker.link.counts()["held"] == 2
    del dropped
    gc.collect()
    wait_for(lambda: worker.link.counts()["held"] == 1)  # (`held`'s, once the reader is done)
    # A future the user still holds gives its result, also through the history.
    assert manager.job(held.job_id) is held
    assert len(manager.job(held.job_id).result()) == 3 * MiB
    # A dropped one is still listed with its status, timings and output, not its result.
    stand_in = manager.job(dropped_id)
    assert stand_in.status == sieve.JobStatus.FINISHED
    assert stand_in.done() and not stand_in.cancelled() and stand_in.exception() is None
    assert stand_in.stdout == f"made {3 * MiB}\n"
    assert stand_in.duration is not None and stand_in.worker_id is not None
    assert stand_in.snapshot()["status"] == "finished"
    assert dropped_id in [j.job_id for j in manager.jobs()]
    with pytest.raises(sieve.ResultReleasedError, match="keep the future"):
        stand_in.result()


def test_small_results_stay_in_the_history(unique: Unique) -> None:
    from sieve_jupyter.manager import get_manager

    @sieve.function(name=unique("small"))
    def small(n: int) -> bytes:
        return bytes(n)

    job_id = small.push(100).job_id
    gc.collect()
    future = get_manager().job(job_id)
    assert future.result() == bytes(100)


@pytest.mark.parametrize("backend", [pytest.param("ray", marks=pytest.mark.ray)], indirect=True)
def test_the_job_history_does_not_keep_large_results_in_rays_object_store(
    backend: str, unique: Unique
) -> None:
    """A result with a large buffer comes back in Ray's object store, without a copy, and
    holds its place there while it lives: the history holds such a job only while something
    else does (a history of 10,000 of them made Ray spill to disk), as for results rebuilt on
    a local worker's shared memory. Small results stay."""
    import weakref

    import numpy as np

    from sieve_jupyter.manager import get_manager

    @sieve.function(name=unique("big"), backend=backend)
    def big(n: int) -> Any:
        return np.ones(n, dtype=np.uint8)

    manager = get_manager()
    held = big.push(3 * MiB)
    assert held.result().sum() == 3 * MiB
    dropped = big.push(3 * MiB)
    dropped_id = dropped.job_id
    value = weakref.ref(dropped.result())
    del dropped
    gc.collect()
    wait_for(lambda: value() is None)  # (once the link's thread is done with it)
    assert manager.job(held.job_id) is held
    assert manager.job(held.job_id).result().sum() == 3 * MiB
    stand_in = manager.job(dropped_id)
    assert stand_in.status == sieve.JobStatus.FINISHED
    with pytest.raises(sieve.ResultReleasedError, match="keep the future"):
        stand_in.result()
    small_id = big.push(10).job_id
    gc.collect()
    assert manager.job(small_id).result().sum() == 10

    @sieve.function(name=unique("count"), backend=backend)
    def count(n: int) -> Any:
        yield from range(n)

    streamed = count.push(3)  # (a stream's outcome comes back Ray's way, holding no result)
    streamed_id = streamed.job_id
    assert streamed.result(timeout=60) == [0, 1, 2]
    del streamed
    gc.collect()
    assert manager.job(streamed_id).outputs == [0, 1, 2]


@pytest.mark.docker
@pytest.mark.usefixtures("docker_backend_ready")
def test_files_cross_into_and_out_of_a_container_without_a_shared_folder(
    unique: Unique, tmp_path: Path
) -> None:
    # Neither side's folder is mounted in the other: the kernel's tmp_path is not, and the
    # container writes into its own /tmp.
    large = tmp_path / "clip.bin"
    large.write_bytes(os.urandom(3 * MiB))  # (travels as a descriptor)
    small = tmp_path / "note.txt"
    small.write_text("from the kernel")  # (travels inside the pickle)

    @sieve.function(name=unique("reverse"), backend="docker")
    def reverse(clip: sieve.File, note: sieve.File) -> Any:
        import os
        import tempfile

        folder = tempfile.mkdtemp()
        with open(clip.path, "rb") as fh:
            content = fh.read()
        with open(os.path.join(folder, "reversed.bin"), "wb") as fh:
            fh.write(content[::-1])
        with open(note.path) as fh, open(os.path.join(folder, "note.txt"), "w") as out:
            out.write(fh.read().upper())
        made = [sieve.File(os.path.join(folder, name)) for name in ("reversed.bin", "note.txt")]
        return made, folder, clip.path, note.path

    files, folder, clip_there, note_there = reverse.run(sieve.File(str(large)), str(small))
    assert clip_there != str(large) and note_there != str(small)  # copies, in the container
    assert not os.path.exists(folder)  # the container's paths mean nothing here...
    reversed_clip, note = files
    with open(reversed_clip, "rb") as fh:  # ...yet its files open in the kernel
        assert fh.read() == large.read_bytes()[::-1]
    assert Path(note.path).read_text() == "FROM THE KERNEL"
    assert os.path.basename(reversed_clip.path) == "reversed.bin"
    assert isinstance(reversed_clip, sieve.File)
    # the same content is sent once: the container reuses its copy
    assert reverse.run(sieve.File(str(large)), str(small))[2] == clip_there


@pytest.mark.docker
@pytest.mark.usefixtures("docker_backend_ready")
def test_a_container_worker_keeps_only_what_its_files_hold_and_a_budget_of_the_rest(
    unique: Unique, tmp_path: Path
) -> None:
    """A long-lived worker (a deployment's) receiving a new file with every call does not fill
    its disk: once a call is over, nothing points at its file, and beyond the budget such
    contents go, oldest first; a file the model keeps stays."""
    clips = []
    for number in range(6):
        clip = tmp_path / f"clip-{number}.bin"
        clip.write_bytes(bytes([number]) * (2 * MiB))  # (a descriptor each: over 64 KiB)
        clips.append(clip)

    @sieve.Model(name=unique("keeper"), backend="docker")
    class Keeper:
        def __setup__(self) -> None:
            from sieve_jupyter.runtime import _files

            self.store = _files.store()
            self.store.spare_bytes = 5 * MiB
            self.kept: list[sieve.File] = []

        def __predict__(self, clip: sieve.File, keep: bool) -> Any:
            import os

            if keep:
                self.kept.append(clip)
            with open(clip.path, "rb") as fh:
                first = fh.read(1)
            on_disk = sum(
                os.path.getsize(os.path.join(folder, name))
                for folder, _, names in os.walk(self.store.root)
                for name in names
            )
            return first, on_disk, [open(k.path, "rb").read(1) for k in self.kept]

    answers = [Keeper.run(sieve.File(str(clip)), number == 0) for number, clip in enumerate(clips)]
    assert [first for first, _, _ in answers] == [bytes([n]) for n in range(6)]
    assert all(kept == [b"\x00"] for _, _, kept in answers)  # (the kept one stays)
    # what is on disk: the kept file, this call's, and at most 5 MiB (two) of the others
    assert [on_disk // MiB for _, on_disk, _ in answers] == [2, 4, 6, 8, 8, 8]
