"""Large buffers through shared memory (`runtime/_shm.py`), over real socket pairs.

Two channels joined to their own `ShmLink` play the kernel and a worker in one process: the
segments, descriptors and mappings are the real ones, so what the tests see in /proc/self is
what a worker and its kernel would see.
"""

from __future__ import annotations

import array
import gc
import os
import pickle
import signal
import socket
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from support import in_thread, joined, wait_for

from sieve_jupyter.runtime import _shm
from sieve_jupyter.runtime.protocol import (
    Channel,
    ChannelClosed,
    ShmLink,
    UndecodableMessage,
    join,
)

pytestmark = pytest.mark.skipif(not _shm.available(), reason="needs memfd (Linux)")


class Peer:
    """One end: a channel, its link, and a thread reading what arrives (notices included)."""

    def __init__(self, sock: socket.socket, keep_seconds: float = 30.0) -> None:
        self.channel = Channel(sock)
        self.link = ShmLink(keep_seconds=keep_seconds)
        join(self.link, [self.channel], self.channel)
        self.received: list[Any] = []
        self.arrived = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                message = self.channel.recv()
            except UndecodableMessage as exc:
                message = exc
            except ChannelClosed:
                return
            with self.arrived:
                self.received.append(message)
                self.arrived.notify_all()
            del message  # (held no longer than the test holds it)

    def next(self) -> Any:
        with self.arrived:
            assert self.arrived.wait_for(lambda: self.received, timeout=30)
            return self.received.pop(0)

    def close(self) -> None:
        self.channel.close()
        self.link.close()
        self.reader.join(10)


@pytest.fixture
def peers(request: pytest.FixtureRequest) -> Iterator[tuple[Peer, Peer]]:
    keep = getattr(request, "param", 30.0)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a, b = Peer(left, keep), Peer(right, keep)
    yield a, b
    a.close()
    b.close()


def memfd_mappings(link: ShmLink | None = None) -> int:
    """Shared segments (of `link`, or of any link) mapped into this process."""
    name = f"/memfd:{link.name}-" if link is not None else "/memfd:sieve-"
    with open("/proc/self/maps") as maps:
        return sum(1 for line in maps if name in line)


def in_a_segment(array: np.ndarray) -> bool:
    """Whether `array`'s memory lies in a shared segment mapped here (not a private copy)."""
    start = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "/memfd:sieve-" not in line:
                continue
            low, high = (int(x, 16) for x in line.split()[0].split("-"))
            if low <= start and start + array.nbytes <= high:
                return True
    return False


def test_an_array_arrives_in_shared_memory_writable_and_intact(peers: tuple[Peer, Peer]) -> None:
    sender, receiver = peers
    original = np.random.default_rng(0).random((500, 1000))
    sender.channel.send(("result", "job-1", original))
    _, _, array = receiver.next()
    assert array.dtype == original.dtype and array.shape == original.shape
    assert np.array_equal(array, original)
    assert in_a_segment(array)  # rebuilt on the shared pages: no copy on this side
    array[0, 0] = -1.0  # writable, as a copy would be
    assert original[0, 0] != -1.0  # and the sender's own array is not touched


def test_a_segment_goes_back_to_its_owner_and_is_reused(peers: tuple[Peer, Peer]) -> None:
    sender, receiver = peers
    array = np.ones(2_000_000)
    sender.channel.send(array)
    received = receiver.next()
    assert sender.link.counts() == {"busy": 1, "free": 0, "mapped": 0, "held": 0}
    view = received[10:20]  # a view keeps the segment leased, like the array itself
    del received
    gc.collect()
    assert sender.link.counts()["busy"] == 1
    assert receiver.link.counts()["held"] == 1
    del view
    assert receiver.link.counts()["held"] == 0
    wait_for(lambda: sender.link.counts() == {"busy": 0, "free": 1, "mapped": 0, "held": 0})
    sender.channel.send(array * 2)  # the same segment again: nothing new is made or mapped
    again = receiver.next()
    assert again[0] == 2.0
    assert sender.link.counts() == {"busy": 1, "free": 0, "mapped": 0, "held": 0}
    assert receiver.link.counts()["mapped"] == 1
    assert memfd_mappings(sender.link) == 2


@pytest.mark.parametrize("reply", ["small", "large"])
def test_a_release_rides_ahead_of_the_next_frame_to_the_owner(
    peers: tuple[Peer, Peer], monkeypatch: pytest.MonkeyPatch, reply: str
) -> None:
    """The kernel drops a result and sends the next call: the worker must find the result's
    segment free when that call's result needs one, however late the notice thread runs (on
    a loaded machine it often ran after, and each result made a new segment)."""
    sender, receiver = peers
    # The receiver's notice thread never sends: the frame it writes is the release's only way.
    monkeypatch.setattr(receiver.link, "send_notices", lambda: None)
    sender.channel.send(np.ones(500_000))
    received = receiver.next()
    del received
    gc.collect()
    assert sender.link.counts()["busy"] == 1  # (not sent yet)
    receiver.channel.send("next call" if reply == "small" else np.zeros(500_000))
    assert sender.next() is not None
    # The notice arrived in front of the frame, so it was handled before the frame was seen.
    assert sender.link.counts()["busy"] == 0
    sender.channel.send(np.ones(500_000))
    assert sender.link.counts()["busy"] == 1 and sender.link.counts()["free"] == 0  # reused


def test_read_only_arrays_stay_read_only(peers: tuple[Peer, Peer]) -> None:
    sender, receiver = peers
    frozen = np.arange(100_000, dtype=np.int64)
    frozen.flags.writeable = False
    sender.channel.send(frozen)
    received = receiver.next()
    assert not received.flags.writeable and np.array_equal(received, frozen)


@pytest.mark.parametrize("size", [100, 200_000, 5_000_000], ids=["small", "medium", "large"])
def test_bytes_bytearray_and_memoryview_keep_their_types(
    peers: tuple[Peer, Peer], size: int
) -> None:
    sender, receiver = peers
    data = os.urandom(size)
    grid = memoryview(bytearray(data[: size - size % 8])).cast("d")
    sender.channel.send((data, bytearray(data), memoryview(data), grid))
    as_bytes, as_bytearray, as_view, as_grid = receiver.next()
    assert type(as_bytes) is bytes and as_bytes == data
    assert type(as_bytearray) is bytearray and as_bytearray == data
    assert type(as_view) is memoryview and as_view.tobytes() == data and as_view.readonly
    assert as_grid.format == "d" and as_grid.shape == grid.shape
    assert as_grid.tobytes() == grid.tobytes() and not as_grid.readonly


def test_inline_and_shared_frames_stay_in_order(peers: tuple[Peer, Peer]) -> None:
    sender, receiver = peers
    for i in range(30):
        sender.channel.send(("small", i) if i % 3 else ("big", i, np.full(50_000, i)))
    for i in range(30):
        message = receiver.next()
        assert message[1] == i
        if i % 3 == 0:
            assert message[2][0] == i and in_a_segment(message[2])


def test_a_frame_that_cannot_be_unpickled_gives_its_segment_back() -> None:
    left, right = socket.socketpair()
    sender = Peer(left)  # (its reader thread takes the receiver's notices)
    receiver = Channel(right)
    receiver_link = ShmLink()
    join(receiver_link, [receiver], receiver)
    module = types.ModuleType("gone_before_it_is_read")
    exec("class Thing:\n    pass", module.__dict__)  # noqa: S102
    sys.modules[module.__name__] = module
    try:
        sender.channel.send(("call", module.Thing(), np.ones(1_000_000)))
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(UndecodableMessage, match="gone_before_it_is_read"):
        receiver.recv()
    wait_for(lambda: sender.link.counts()["busy"] == 0)  # nothing holds its segment
    sender.channel.send(("next", 1))
    assert receiver.recv() == ("next", 1)  # still in step
    sender.close()
    receiver.close()
    receiver_link.close()


@pytest.mark.parametrize("peers", [0.05], indirect=True)
def test_idle_segments_are_retired_on_both_sides(peers: tuple[Peer, Peer]) -> None:
    sender, receiver = peers
    sender.channel.send(np.ones(3_000_000))
    received = receiver.next()
    assert memfd_mappings(sender.link) == 2  # the owner's mapping and the receiver's
    del received
    # released, then retired once idle for keep_seconds: unmapped on both sides
    wait_for(lambda: memfd_mappings(sender.link) == 0)
    assert sender.link.counts() == {"busy": 0, "free": 0, "mapped": 0, "held": 0}
    assert receiver.link.counts() == {"busy": 0, "free": 0, "mapped": 0, "held": 0}


def test_a_segment_costs_no_descriptor_once_shared(peers: tuple[Peer, Peer]) -> None:
    sender, receiver = peers
    before = len(os.listdir("/proc/self/fd"))
    kept = []
    for _ in range(20):  # twenty results held at once: twenty segments
        sender.channel.send(np.ones(200_000))
        kept.append(receiver.next())
    assert sender.link.counts()["busy"] == 20
    assert len(os.listdir("/proc/self/fd")) == before


def test_closing_frees_the_owners_segments_and_keeps_views_valid() -> None:
    left, right = socket.socketpair()
    sender, receiver = Peer(left), Peer(right)
    sender.channel.send(np.arange(1_000_000, dtype=np.float64))
    received = receiver.next()
    sender.close()  # the sender is gone (a worker died): its mapping goes
    receiver.close()
    assert memfd_mappings(sender.link) == 1  # the receiver's stays while the array uses it
    assert received[-1] == 999_999.0
    del received
    assert memfd_mappings(sender.link) == 0


@pytest.mark.parametrize("outcome", ["sent", "given back"])
def test_a_link_closed_while_a_frame_is_written_leaves_its_segment_to_the_writer(
    outcome: str,
) -> None:
    # A worker dies while the kernel's sender is between leasing and sending: the reader
    # thread closes the link. The writer still uses the segment's descriptor, so closing it
    # then could close another file that took its number; the writer closes it when it is done.
    link = ShmLink()
    lease = link.lease(4 << 20)
    fd = lease.fd
    lease.put(0, memoryview(b"x" * 4096))
    link.close()
    assert os.fstat(fd).st_size == lease.size  # still the writer's
    assert memfd_mappings(link) == 1
    if outcome == "sent":
        link.sent(lease)
    else:
        link.give_back(lease)
    assert lease.segment.fd is None
    del lease
    gc.collect()
    assert memfd_mappings(link) == 0
    assert link.counts() == {"busy": 0, "free": 0, "mapped": 0, "held": 0}


def test_an_unlinked_channel_keeps_large_parts_in_the_stream() -> None:
    left, right = socket.socketpair()
    sender, receiver = Channel(left), Channel(right)
    thread, outcome = in_thread(lambda: sender.send(np.ones(1_000_000)))
    received = receiver.recv()
    joined(thread, outcome)
    assert received.sum() == 1_000_000 and not in_a_segment(received)
    sender.close()
    receiver.close()


def test_an_interrupted_recv_of_a_shared_frame_resumes() -> None:
    # The reader is interrupted while the stream part of a frame in shared memory is still
    # missing; called again, it finishes the frame with the descriptor it already holds.
    left, right = socket.socketpair()
    sender, receiver = Channel(left), Channel(right)
    links = [ShmLink(), ShmLink()]
    join(links[0], [sender], sender)
    join(links[1], [receiver], receiver)
    rest: list[bytes] = []

    def send_half(chunks: list[Any], descriptors: list[int]) -> None:
        stream = b"".join(bytes(memoryview(c).cast("B")) for c in chunks)
        half = len(stream) // 2
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", descriptors))]
        left.sendmsg([stream[:half]], rights)
        rest.append(stream[half:])

    sender._send_parts = send_half  # type: ignore[method-assign]
    sender.send(("x", np.ones(500_000), b"y" * 100))

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR2, interrupt)
    timer = threading.Timer(0.3, signal.pthread_kill, (threading.get_ident(), signal.SIGUSR2))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            receiver.recv()
    finally:
        timer.join()
        signal.signal(signal.SIGUSR2, previous)
    left.sendall(rest[0])
    message = receiver.recv()
    assert message[0] == "x" and message[1].sum() == 500_000 and message[2] == b"y" * 100
    del message
    for channel in (sender, receiver):
        channel.close()
    for link in links:
        link.close()


def test_pickling_errors_leave_no_segment_behind(peers: tuple[Peer, Peer]) -> None:
    sender, receiver = peers
    with pytest.raises((TypeError, pickle.PicklingError)):
        sender.channel.send((np.ones(1_000_000), threading.Lock()))
    assert sender.link.counts() == {"busy": 0, "free": 0, "mapped": 0, "held": 0}
