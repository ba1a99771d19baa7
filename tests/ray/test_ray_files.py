"""`sieve.File`s between the kernel and a Ray worker on a node that does not see its files.

The tier's node2 has a folder of its own (`RayCluster.apart`: a tmpfs in node2's mount
namespace), so a file the kernel writes there is not on node2 and one node2 writes there is not
here, as between two machines. Files then travel with their content, every way a value crosses:
a call's arguments, its answer, a burst of pushes (grouped calls, whose outcomes come as side
messages), a streamed output, a call the worker makes to a function of the kernel and its
answer. A content the worker holds is not sent again. On the head node, which shares the
kernel's folders, they keep travelling as paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sieve_jupyter as sieve

Unique = Callable[[str], str]
MiB = 1024 * 1024


@pytest.fixture
def apart(ray_cluster: Any) -> Path:
    if ray_cluster.apart is None:
        pytest.skip("node2 shares every folder with this machine (see the tier's setup)")
    folder: Path = ray_cluster.apart / os.urandom(4).hex()
    folder.mkdir()
    return folder


def _pool(name: str) -> Any:
    from sieve_jupyter.manager import get_manager

    return get_manager().record(name).pool


@pytest.fixture
def on_node() -> Iterator[Callable[[str], None]]:
    """Place the Ray workers of functions started from now on on the tier's node `label`."""
    saved = sieve.config.ray_actor_options

    def place(label: str) -> None:
        sieve.configure(ray_actor_options={"resources": {label: 1}})

    yield place
    sieve.configure(ray_actor_options=saved)


def test_files_cross_to_and_from_a_node_that_does_not_share_them(
    unique: Unique, apart: Path, on_node: Callable[[str], None]
) -> None:
    on_node("node2")
    large = apart / "clip.bin"
    large.write_bytes(os.urandom(3 * MiB))  # (its content goes through Ray's object store)
    small = apart / "note.txt"
    small.write_text("from the kernel")

    @sieve.function(name=unique("reverse"), backend="ray")
    def reverse(clip: sieve.File, note: sieve.File, out: str) -> Any:
        import os

        os.makedirs(out, exist_ok=True)  # (in node2's own folder: not on the kernel's machine)
        with open(clip.path, "rb") as fh, open(os.path.join(out, "reversed.bin"), "wb") as rev:
            rev.write(fh.read()[::-1])
        with open(note.path) as fh, open(os.path.join(out, "note.txt"), "w") as upper:
            upper.write(fh.read().upper())
        made = [sieve.File(os.path.join(out, name)) for name in ("reversed.bin", "note.txt")]
        return made, clip.path, os.path.exists(str(large)), sieve.Image(path=made[1].path)

    out = apart / "out"
    files, clip_there, original_seen, image = reverse.run(
        sieve.File(str(large)), str(small), str(out)
    )
    assert not original_seen  # node2 does not see the kernel's file...
    assert clip_there != str(large)  # ...it got a copy of its content
    assert not out.exists()  # node2's folder is not here either...
    reversed_clip, note = files
    assert Path(reversed_clip.path).read_bytes() == large.read_bytes()[::-1]  # ...yet they open
    assert Path(note.path).read_text() == "FROM THE KERNEL"
    assert os.path.basename(reversed_clip.path) == "reversed.bin"
    assert isinstance(image, sieve.Image) and Path(image.path).read_text() == "FROM THE KERNEL"
    # the same content is sent once: the next call refers to the worker's copy...
    (link,) = [w.link for w in _pool(reverse.name).live_workers()]
    request = link._request("probe", (sieve.File(str(large)), str(small), str(out)), {})
    assert type(request) is bytes and len(request) < 64 * 1024  # (not the 3 MiB again)
    assert reverse.run(sieve.File(str(large)), str(small), str(out))[1] == clip_there
    # ...and a new worker gets it anew
    reverse.restart()
    files, clip_again, _, _ = reverse.run(sieve.File(str(large)), str(small), str(out))
    assert Path(files[0].path).read_bytes() == large.read_bytes()[::-1]
    # a burst goes in groups, whose outcomes come back as side messages
    futures = [
        reverse.push(sieve.File(str(large)), str(small), str(apart / f"out{i}")) for i in range(6)
    ]
    for future in futures:
        (clip, _), *_ = future.result(timeout=120)
        assert Path(clip.path).read_bytes() == large.read_bytes()[::-1]


def test_streamed_files_and_calls_back_to_the_kernel_carry_their_content(
    unique: Unique, apart: Path, on_node: Callable[[str], None]
) -> None:
    @sieve.function(name=unique("count-bytes"))  # a local worker, on the kernel's machine
    def count_bytes(file: sieve.File, out: str) -> sieve.File:
        import os

        with open(file.path, "rb") as fh:
            content = fh.read()
        os.makedirs(out, exist_ok=True)
        answer = os.path.join(out, "count.txt")
        with open(answer, "w") as fh:
            fh.write(str(len(content)))
        return sieve.File(answer)

    on_node("node2")
    counter = count_bytes.name

    @sieve.function(name=unique("frames"), backend="ray")
    def frames(count: int, out: str, kernel_out: str) -> Any:
        import os
        import time

        os.makedirs(out, exist_ok=True)
        for index in range(count):
            path = os.path.join(out, f"frame-{index}.txt")
            with open(path, "w") as fh:
                fh.write(f"frame {index} " * (index + 1))
            if index == count - 1:
                time.sleep(0.2)  # (a job that runs on: its call goes through the hub)
                counted = sieve.function.get(counter).run(sieve.File(path), kernel_out)
                with open(counted.path) as fh:  # the kernel's answer, a file made there
                    yield fh.read()
            else:
                yield sieve.File(path)

    out, kernel_out = apart / "frames", apart / "kernel-out"
    items = list(frames.run(3, str(out), str(kernel_out)))
    assert not out.exists()
    assert [Path(f.path).read_text() for f in items[:2]] == ["frame 0 ", "frame 1 frame 1 "]
    assert items[2] == str(len("frame 2 " * 3))
    assert (kernel_out / "count.txt").read_text() == items[2]  # (written by the local worker)


def test_a_node_that_shares_the_kernels_files_gets_their_paths(
    unique: Unique, tmp_path: Path, on_node: Callable[[str], None]
) -> None:
    on_node("head")
    note = tmp_path / "note.txt"
    note.write_text("shared")

    @sieve.function(name=unique("where"), backend="ray")
    def where(file: sieve.File) -> Any:
        return file.path, sieve.File(file.path)

    path, back = where.run(sieve.File(str(note)))
    assert path == str(note) and back.path == str(note)


CLUSTER_ONLY = "class Secret:\n    def __init__(self, x):\n        self.x = x\n"


def test_an_answer_the_kernel_cannot_rebuild_fails_its_job_and_nothing_waits(
    unique: Unique, apart: Path, on_node: Callable[[str], None]
) -> None:
    """A result of a type only the cluster can import (a module in node2's own folder): its
    job fails saying why, the calls behind it end too, and a fresh worker serves on."""
    on_node("node2")

    @sieve.function(name=unique("secret"), backend="ray")
    def secret(x: int, folder: str) -> Any:
        import importlib
        import os
        import sys

        if x < 0:
            return x
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "cluster_only.py"), "w") as fh:
            fh.write(CLUSTER_ONLY)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        return importlib.import_module("cluster_only").Secret(x)

    folder = str(apart / "modules")
    with pytest.raises(TypeError, match=r"cannot be rebuilt in the kernel .*cluster_only"):
        secret.run(1, folder)
    futures = [secret.push(i, folder) for i in range(6)]
    for future in futures:  # (each ends: its own answer unreadable, or sent behind one)
        with pytest.raises((TypeError, sieve.WorkerCrashedError)):
            future.result(timeout=120)
    assert secret.run(-1, folder) == -1


def test_a_worker_that_changed_a_file_it_got_gets_its_content_again(
    unique: Unique, apart: Path, on_node: Callable[[str], None]
) -> None:
    on_node("node2")
    source = apart / "log.txt"
    source.write_text("first line\n")

    @sieve.function(name=unique("append"), backend="ray")
    def append(log: sieve.File) -> str:
        with open(log.path) as fh:
            before = fh.read()
        with open(log.path, "a") as fh:  # (its own copy, on node2)
            fh.write("added by the worker\n")
        return before

    for _ in range(3):
        assert append.run(sieve.File(str(source))) == "first line\n"
    assert source.read_text() == "first line\n"


def test_a_worker_drops_the_contents_the_kernel_no_longer_refers_to(
    unique: Unique, apart: Path, on_node: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker on another machine keeps each content it got, for the kernel's references;
    beyond the budget the kernel forgets the least recently used and tells the worker with its
    next call, so a long-lived worker (a deployment's) does not fill its disk. A forgotten
    content sent again arrives whole; one still held goes as a reference."""
    from sieve_jupyter.runtime import _file_store

    monkeypatch.setattr(_file_store, "SPARE_BYTES", 5 * MiB)  # (the kernel's side of it)
    on_node("node2")
    clips = []
    for number in range(6):
        clip = apart / f"clip-{number}.bin"
        clip.write_bytes(bytes([number]) * (2 * MiB))
        clips.append(clip)

    @sieve.function(name=unique("originals"), backend="ray")
    def originals(clip: sieve.File) -> Any:
        import os

        from sieve_jupyter.runtime import _files

        with open(clip.path, "rb") as fh:
            first = fh.read(1)
        root = _files.store().root
        return first, sum(name.endswith(".original") for name in os.listdir(root))

    answers = [originals.run(sieve.File(str(clip))) for clip in clips]
    assert [first for first, _ in answers] == [bytes([n]) for n in range(6)]
    # two fit in 5 MiB with the one arriving; the third is dropped with the next call
    assert [kept for _, kept in answers] == [1, 2, 3, 3, 3, 3]
    # a held content goes as a reference (nothing new kept: the call drops clip-3's)...
    assert originals.run(sieve.File(str(clips[5]))) == (b"\x05", 2)
    # ...and a forgotten one arrives whole again
    assert originals.run(sieve.File(str(clips[0]))) == (b"\x00", 3)
