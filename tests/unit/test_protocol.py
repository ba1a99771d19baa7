"""The frame protocol and the HMAC handshake of `runtime/protocol.py`, over real socket pairs.

No worker process is involved: one end of a `socket.socketpair()` plays the manager, the other
the worker, each on its own thread where both must talk at once.
"""

from __future__ import annotations

import enum
import hmac
import os
import pathlib
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from support import in_thread, joined, sleeps_in

from sieve_jupyter.runtime import _reading, _shm, _wire
from sieve_jupyter.runtime.protocol import (
    DIRECT_CALL,
    SLEEP_AFTER,
    AuthenticationError,
    Channel,
    ChannelClosed,
    UndecodableMessage,
    authenticate_client,
    authenticate_server,
    dumps,
)

#: the frame prefix as documented in the module: u32 buffer count, u64 body length
PREFIX = struct.Struct("!IQ")


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a, b = Channel(left), Channel(right)
    yield a, b
    a.close()
    b.close()


# -- frames ------------------------------------------------------------------------------------


def test_large_bytearray_travels_out_of_band_and_arrives_intact(
    pair: tuple[Channel, Channel],
) -> None:
    payload = bytearray(np.random.default_rng(1).integers(0, 256, 5_000_000, dtype=np.uint8))
    message = ("call", "job-1", (pickle.PickleBuffer(payload),), {"small": b"x" * 10})
    body, buffers = dumps(message)
    # the 5 MB stay out of the pickle body: that is what spares a copy
    assert len(buffers) == 1 and len(body) < 10_000
    sender, receiver = pair
    thread, outcome = in_thread(lambda: sender.send(message))
    received = receiver.recv()
    assert joined(thread, outcome) is None
    kind, job, (data,), kwargs = received
    assert (kind, job, kwargs) == ("call", "job-1", {"small": b"x" * 10})
    assert bytes(data) == bytes(payload)


def test_numpy_arrays_round_trip_with_dtype_shape_and_values(
    pair: tuple[Channel, Channel],
) -> None:
    big = np.arange(3_000_000, dtype=np.float64).reshape(1000, 3000)
    small = np.array([[1, 2], [3, 4]], dtype=np.int16)
    strided = big[::2, ::3]  # not contiguous: pickled in band, must still round-trip
    _, buffers = dumps(big)
    assert buffers, "a large contiguous array should travel out of band"
    sender, receiver = pair
    thread, outcome = in_thread(lambda: sender.send({"big": big, "small": small, "s": strided}))
    received = receiver.recv()
    assert joined(thread, outcome) is None
    for key, original in (("big", big), ("small", small), ("s", strided)):
        assert received[key].dtype == original.dtype
        assert received[key].shape == original.shape
        assert np.array_equal(received[key], original)
    # arrays rebuilt on received buffers are writable (user code may modify its inputs)
    received["big"][0, 0] = -1.0


def test_many_small_messages_in_one_burst_parse_in_order(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    messages = [("log", f"job-{i}", "stdout", "x" * (i % 7)) for i in range(2000)]
    # Written before anything is read, so the reader gets many frames per recv() call and must
    # split them itself (and frames straddle its chunk boundaries).
    thread, outcome = in_thread(lambda: [sender.send(m) for m in messages])
    first = receiver.recv()
    received = [first] + [receiver.recv() for _ in range(len(messages) - 1)]
    joined(thread, outcome)
    assert received == messages
    assert not receiver.pending()


def test_pending_reports_a_buffered_next_message(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    for i in range(3):
        sender.send(("call", i))
    assert receiver.recv() == ("call", 0)
    assert receiver.pending()  # the other two arrived with the first read
    receiver.recv()
    receiver.recv()
    assert not receiver.pending()


def test_has_input_sees_the_socket_and_the_buffer_and_the_end(
    pair: tuple[Channel, Channel],
) -> None:
    sender, receiver = pair
    assert not receiver.has_input()
    # a notice alone (for the channel itself) is no message: nothing to wait for in `recv`
    sender.socket.sendall(_wire.notice(_shm.NOTICE_RELEASE, b""))
    assert not receiver.has_input()
    sender.send(("cancel", 1))
    sender.send(("cancel", 2))
    assert receiver.has_input()  # on the socket, not read yet
    assert receiver.recv() == ("cancel", 1)
    assert receiver.has_input()  # the second came with the first read
    assert receiver.recv() == ("cancel", 2)
    assert not receiver.has_input()
    sender.close()
    with pytest.raises(ChannelClosed):
        receiver.has_input()


def test_messages_mixing_small_and_out_of_band_frames_stay_in_order(
    pair: tuple[Channel, Channel],
) -> None:
    sender, receiver = pair
    blob = bytes(range(256)) * 4096  # 1 MiB
    messages: list[Any] = []
    for i in range(20):
        messages.append(("small", i))
        messages.append(("blob", i, pickle.PickleBuffer(bytearray(blob))))
    thread, outcome = in_thread(lambda: [sender.send(m) for m in messages])
    for i in range(20):
        assert receiver.recv() == ("small", i)
        kind, index, data = receiver.recv()
        assert (kind, index) == ("blob", i) and bytes(data) == blob
    joined(thread, outcome)


def test_peer_closing_mid_body_raises_channel_closed() -> None:
    left, right = socket.socketpair()
    body = pickle.dumps(("result", "job-1", "x" * 1000), protocol=5)
    left.sendall(PREFIX.pack(0, len(body)) + body[: len(body) // 2])
    left.close()
    channel = Channel(right)
    with pytest.raises(ChannelClosed):
        channel.recv()
    channel.close()


def test_peer_closing_mid_prefix_raises_channel_closed() -> None:
    left, right = socket.socketpair()
    left.sendall(PREFIX.pack(0, 10)[:5])
    left.close()
    channel = Channel(right)
    with pytest.raises(ChannelClosed):
        channel.recv()
    channel.close()


def test_peer_closing_mid_large_buffer_raises_channel_closed() -> None:
    # A buffer bigger than one read chunk is received straight into its own bytearray: that
    # path must notice the close too, instead of returning a short buffer.
    left, right = socket.socketpair()
    body = pickle.dumps("header", protocol=5)
    size = 4 * 1024 * 1024
    header = PREFIX.pack(1, len(body)) + struct.pack("!Q", size)

    def write_part() -> None:
        left.sendall(header + body + b"\0" * (size // 3))
        left.close()

    thread, outcome = in_thread(write_part)
    channel = Channel(right)
    with pytest.raises(ChannelClosed):
        channel.recv()
    joined(thread, outcome)
    channel.close()


def test_clean_close_between_frames_raises_channel_closed(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    sender.send("last")
    sender.close()
    assert receiver.recv() == "last"
    with pytest.raises(ChannelClosed):
        receiver.recv()


def test_a_channel_closed_by_another_thread_never_waits_on_its_old_descriptor() -> None:
    """A reader waits in `poll`, which holds the socket's descriptor number. Once the channel is
    closed (by another thread: stopping a worker), that number is free, and the next socket the
    process opens takes it: a wait that then polled it would watch someone else's socket, and
    sleep for as long as nothing arrives there. It must say the channel is closed instead."""
    left, right = socket.socketpair()
    channel = Channel(left)
    assert not channel.readable_within(0)  # (the descriptor is now the poller's)
    number = left.fileno()
    channel.close()
    other, other_peer = socket.socketpair()  # (the lowest free numbers: usually that one)
    taken = other.fileno() == number
    if not taken:
        os.dup2(other.fileno(), number)  # the number names another socket, silent
    try:
        assert channel.readable_within(10)  # its end: at once, not after 10 s
        thread, outcome = in_thread(channel.recv)
        assert isinstance(joined(thread, outcome), ChannelClosed)
    finally:
        if not taken:
            os.close(number)
        for sock in (other, other_peer, right):
            sock.close()


def test_a_reader_woken_after_its_channel_was_closed_ends_with_its_own_socket() -> None:
    """A sleeping poll looks its descriptor number up again when it is woken. A worker stopped
    by another thread has its peer gone (which wakes the reader's poll) and its channel closed;
    on a busy machine the reader may run only after the process opened another file, which
    took the freed number: the poll then watched that file and slept on, and the worker was
    never replaced (the side panel's restart test, about 1 run in 15 beside a CPU hog).

    Here the reader is held off its CPU the same way (a lowest-priority thread sharing one CPU
    with a busy process) while its peer goes, the channel is closed and a socket is opened.
    The channel's descriptor must stay its own until the reader has seen the end."""
    left, right = socket.socketpair()
    channel = Channel(left)
    thread, outcome = in_thread(channel.recv)
    assert _sleeps_in(thread) == "poll"
    cpu = min(os.sched_getaffinity(0))
    busy = subprocess.Popen(
        [sys.executable, "-c", "print(flush=True)\nwhile True: pass"], stdout=subprocess.PIPE
    )
    opened: list[socket.socket] = []
    try:
        os.sched_setaffinity(busy.pid, {cpu})
        os.sched_setaffinity(thread.native_id, {cpu})
        os.sched_setscheduler(thread.native_id, os.SCHED_IDLE, os.sched_param(0))
        assert busy.stdout is not None
        busy.stdout.readline()  # (it is spinning)
        right.close()
        channel.close()
        opened.extend(socket.socketpair())  # (the lowest free numbers)
    finally:
        busy.kill()
        busy.communicate()
    try:
        assert isinstance(joined(thread, outcome), ChannelClosed)
        assert left.fileno() == -1  # closed once the reader was done with it
    finally:
        for sock in opened:
            sock.close()


def test_sending_to_a_closed_peer_raises_channel_closed() -> None:
    left, right = socket.socketpair()
    right.close()
    channel = Channel(left)
    with pytest.raises(ChannelClosed):
        for _ in range(100):  # the first send may land in the buffer before the error shows
            channel.send(b"x" * 100_000)
    channel.close()


def test_unpicklable_message_raises_type_error_and_channel_stays_usable(
    pair: tuple[Channel, Channel],
) -> None:
    sender, receiver = pair
    with pytest.raises(TypeError):
        sender.send(("call", threading.Lock()))
    sender.send(("call", "fine"))  # nothing half-written precedes it
    assert receiver.recv() == ("call", "fine")


def test_lambdas_fall_back_to_cloudpickle(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    offset = 3
    sender.send(("load", lambda x: x + offset))
    _, fn = receiver.recv()
    assert fn(4) == 7


def test_a_value_whose_type_lives_in_main_travels_by_value(
    pair: tuple[Channel, Channel], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notebook's Enum pickles by reference to `__main__`, which the worker's `__main__` does
    # not have: the frame must carry the class itself.
    color = enum.Enum("Color", "RED GREEN", module="__main__")  # type: ignore[misc]
    monkeypatch.setattr(sys.modules["__main__"], "Color", color, raising=False)
    sender, receiver = pair
    sender.send(("call", color.GREEN))
    monkeypatch.delattr(sys.modules["__main__"], "Color")  # (as in the worker)
    kind, value = receiver.recv()
    assert (kind, type(value).__name__, value.name, value.value) == ("call", "Color", "GREEN", 2)


def test_a_large_body_without_buffers_arrives_whole(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    blob = bytes(range(256)) * 1024  # 256 KiB of `bytes`: inside the pickle, which is large
    messages = [("blob", blob), ("small", 1), ("blob", blob[::-1])]
    thread, outcome = in_thread(lambda: [sender.send(m) for m in messages])
    assert [receiver.recv() for _ in messages] == messages
    joined(thread, outcome)


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("size", [1000, 3 * 1024 * 1024], ids=["in-buffer", "out-of-band"])
def test_an_interrupted_recv_resumes_where_it_stopped(size: int) -> None:
    # A frame arrives in two pieces; the reader is interrupted (as by the notebook's stop
    # button) while it waits for the second. Called again, it must return the whole message:
    # what it had read is kept, so the channel stays in step. A direct call's waiting thread
    # is interrupted this way.
    left, right = socket.socketpair()
    message = ("result", "job-1", pickle.PickleBuffer(bytearray(b"x" * size)), 1.0, 2.0)
    body, buffers = dumps(message)
    views = [b.raw() for b in buffers]
    lengths = b"".join(struct.pack("!Q", v.nbytes) for v in views)
    frame = PREFIX.pack(len(views), len(body)) + lengths + body + b"".join(map(bytes, views))
    half = len(frame) // 2
    second_half = threading.Event()

    def write() -> None:
        left.sendall(frame[:half])
        second_half.wait(30)
        left.sendall(frame[half:])

    def handler(signum: int, frame: Any) -> None:
        raise _Interrupted()

    main = threading.get_ident()
    previous = signal.signal(signal.SIGUSR2, handler)
    receiver = Channel(right)
    writer, outcome = in_thread(write)
    try:
        # the interrupt comes once the reader is waiting for the rest of the frame
        timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGUSR2))
        timer.start()
        with pytest.raises(_Interrupted):
            receiver.recv()
        timer.join()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    second_half.set()
    kind, job, data, *_ = receiver.recv()
    assert (kind, job) == ("result", "job-1") and bytes(data) == b"x" * size
    joined(writer, outcome)
    Channel(left).send("next")
    assert receiver.recv() == "next"  # still in step
    left.close()
    receiver.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGUSR2], ids=["SIGINT", "other"])
@pytest.mark.usefixtures("interruptible")
def test_an_interrupted_large_write_still_goes_out_whole(signum: int) -> None:
    # The receiver reads nothing at first, so a 16 MiB frame blocks its writer partway. The
    # main thread (where Python raises KeyboardInterrupt, or any signal handler's exception)
    # leaves large frames to a helper thread: the interrupt reaches it at once, while the frame
    # still goes out whole once the receiver reads, so the channel stays in step.
    left, right = socket.socketpair()
    sender, receiver = Channel(left), Channel(right)
    reading = threading.Event()
    received: list[Any] = []

    def read() -> None:
        reading.wait(30)
        try:
            while True:
                received.append(receiver.recv())
        except ChannelClosed as exc:
            received.append(exc)

    main = threading.get_ident()
    timer = threading.Timer(0.3, signal.pthread_kill, (main, signum))
    expected = KeyboardInterrupt if signum == signal.SIGINT else _Interrupted
    previous = signal.signal(signal.SIGUSR2, _raise_interrupted)
    reader, outcome = in_thread(read)
    payload = bytearray(b"y" * (16 << 20))
    try:
        timer.start()
        with pytest.raises(expected):
            sender.send(("call", "job-1", (pickle.PickleBuffer(payload),), {}))
        assert not reading.is_set()  # the interrupt came while the frame was still going out
    finally:
        timer.join()
        signal.signal(signal.SIGUSR2, previous)
    reading.set()
    sender.send(("call", "job-2", (), {}))  # written after the rest of job-1
    sender.close()
    joined(reader, outcome)
    assert [m[1] for m in received[:2]] == ["job-1", "job-2"]
    assert bytes(received[0][2][0]) == bytes(payload)
    assert isinstance(received[2], ChannelClosed)
    receiver.close()


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise _Interrupted()


def test_frame_flags_arrive_with_their_message_even_when_it_cannot_be_unpickled(
    pair: tuple[Channel, Channel],
) -> None:
    sender, receiver = pair
    sender.send(("call", "job-1", (1,), {}), DIRECT_CALL)
    sender.send(("call", "job-2", (2,), {}))
    assert receiver.recv()[1] == "job-1" and receiver.flags == DIRECT_CALL
    assert receiver.recv()[1] == "job-2" and receiver.flags == 0
    # a frame whose pickle refers to a module the reader lacks: the flags are still known
    module = types.ModuleType("gone_by_the_time_it_is_read")
    exec("class Thing:\n    pass", module.__dict__)  # noqa: S102
    sys.modules[module.__name__] = module
    try:
        sender.send(("call", "job-3", (module.Thing(),), {}), DIRECT_CALL)
    finally:
        del sys.modules[module.__name__]
    sender.send(("call", "job-4", (4,), {}))
    with pytest.raises(UndecodableMessage, match="gone_by_the_time_it_is_read"):
        receiver.recv()
    assert receiver.flags == DIRECT_CALL
    assert receiver.recv()[1] == "job-4" and receiver.flags == 0  # still in step


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.05], ids=["ready", "while-polling", "after"])
def test_a_polling_channel_receives_whenever_the_message_comes(
    pair: tuple[Channel, Channel], delay: float
) -> None:
    # spin=2 ms: a message within it is read while polling, a later one after falling asleep
    sender, receiver = pair
    receiver.spin = 0.002

    def send_later() -> None:
        time.sleep(delay)
        sender.send(("result", "job-1", 42))

    thread, outcome = in_thread(send_later)
    assert receiver.recv() == ("result", "job-1", 42)
    joined(thread, outcome)
    sender.close()
    with pytest.raises(ChannelClosed):  # a peer that leaves while we poll is noticed too
        receiver.recv()


@pytest.fixture
def yields(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times channels yielded the CPU so far: whether a wait polled shows in the
    `sched_yield`s between its polls. (A poll is never crowded out here: on a loaded machine
    any turn of it can take long, and crowding has a test of its own.)"""
    monkeypatch.setattr(_reading, "_CROWDED", float("inf"))
    count = [0]
    real_yield = _reading.os.sched_yield

    def counted_yield() -> None:
        count[0] += 1
        real_yield()

    monkeypatch.setattr(_reading.os, "sched_yield", counted_yield)
    return count


def test_a_channel_stops_polling_when_polling_does_not_pay(
    pair: tuple[Channel, Channel], yields: list[int]
) -> None:

    def polled(wait: Callable[[], object]) -> bool:
        before = yields[0]
        wait()
        return yields[0] > before

    sender, receiver = pair
    receiver.spin = 0.001
    nothing_comes = lambda: receiver.readable_within(0.002)  # noqa: E731
    # polls that find nothing: after _SPIN_MISSES in a row the channel sleeps at once ...
    assert all(polled(nothing_comes) for _ in range(_reading._SPIN_MISSES))
    assert not any(polled(nothing_comes) for _ in range(_reading._SPIN_PROBE))
    # ... and polls again now and then, to see whether it pays again
    assert polled(nothing_comes)
    assert not polled(nothing_comes)

    # A message that comes within the polling time even to a sleeping channel turns polling
    # back on (a long `spin` here, so a slow thread still sends within it).
    receiver.spin = 30.0

    def send_soon() -> None:
        time.sleep(0.05)
        sender.send(("call", "job-1", (1,), {}))

    thread, outcome = in_thread(send_soon)
    assert not polled(lambda: receiver.readable_within(None))  # slept, woken by the message
    joined(thread, outcome)
    assert receiver.recv() == ("call", "job-1", (1,), {})
    receiver.spin = 0.001
    assert polled(nothing_comes)  # polling again


def test_a_poll_crowded_out_by_another_process_stops_polling(
    pair: tuple[Channel, Channel], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A yield that hands the CPU over for longer than `_CROWDED` ran another process that needs
    # this CPU (on two vCPUs: the client and the server beside a polling worker): polling on
    # would take turns from it. Simulated here by a yield that lasts that long.
    turns = [0]

    def crowded_yield() -> None:
        turns[0] += 1
        time.sleep(2 * _reading._CROWDED)

    monkeypatch.setattr(_reading.os, "sched_yield", crowded_yield)
    _, receiver = pair
    receiver.spin = 0.05
    assert not receiver.readable_within(0.01)
    assert turns[0] == 1  # gave up polling after one crowded turn, and slept
    for _ in range(_reading._SPIN_PROBE):
        assert not receiver.readable_within(0.001)
    assert turns[0] == 1  # the waits after it sleep at once, as after polls that ran out
    assert not receiver.readable_within(0.001)
    assert turns[0] == 2  # then it tries polling again


def test_a_frame_flagged_sleep_after_makes_the_next_wait_sleep_at_once(
    pair: tuple[Channel, Channel], yields: list[int]
) -> None:
    # (what a worker does for a call whose caller waits on the worker's CPU: polling there
    # would take the CPU the caller needs)
    sender, receiver = pair
    receiver.spin = 0.001
    sender.send(("call", "job-1", (1,), {}), DIRECT_CALL | SLEEP_AFTER)
    assert receiver.recv() == ("call", "job-1", (1,), {})
    assert receiver.flags == DIRECT_CALL | SLEEP_AFTER
    receiver.sleep_next_wait()
    before = yields[0]
    assert not receiver.readable_within(0.002)  # slept: no poll
    assert yields[0] == before
    assert not receiver.readable_within(0.002)  # only once: the next wait polls again
    assert yields[0] > before


def _sleeps_in(thread: threading.Thread) -> str:
    return sleeps_in(pathlib.Path(f"/proc/self/task/{thread.native_id}/wchan"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_after_sleep_after_the_next_recv_sleeps_in_the_read_itself(
    pair: tuple[Channel, Channel], yields: list[int]
) -> None:
    # A worker answering a followed call sleeps until the next call in one system call, a
    # read, rather than a poll and then a read; only the next wait does.
    sender, receiver = pair
    receiver.spin = 0.001
    receiver.sleep_next_wait()
    before = yields[0]
    thread, outcome = in_thread(receiver.recv)
    assert _sleeps_in(thread) == "read"
    sender.send(("call", "job-2", (2,), {}))
    assert joined(thread, outcome) == ("call", "job-2", (2,), {})
    assert yields[0] == before  # no poll on the way
    thread, outcome = in_thread(receiver.recv)
    assert _sleeps_in(thread) == "poll"  # the wait after it polls, then sleeps in a poll
    sender.send(("call", "job-3", (3,), {}))
    assert joined(thread, outcome) == ("call", "job-3", (3,), {})
    assert yields[0] > before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_a_read_asleep_when_its_channel_is_closed_ends_and_closes_the_socket(
    pair: tuple[Channel, Channel],
) -> None:
    # As for a sleeping poll (see the test of a reader woken after its channel was closed):
    # closing the channel wakes the read, which closes the socket once it is done with it.
    _, receiver = pair
    receiver.sleep_next_wait()
    thread, outcome = in_thread(receiver.recv)
    assert _sleeps_in(thread) == "read"
    receiver.close()
    assert isinstance(joined(thread, outcome), ChannelClosed)
    assert receiver.fileno() == -1


def _voluntary_switches(thread_id: int) -> int:
    with open(f"/proc/self/task/{thread_id}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc")


def _state(thread_id: int) -> str:
    with open(f"/proc/self/task/{thread_id}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_a_waiting_reader_is_not_woken_when_the_peer_reads_what_this_side_wrote(
    pair: tuple[Channel, Channel],
) -> None:
    # The kernel's reader thread waits on a worker's data connection while other threads of
    # the kernel write calls on it: each call the worker read used to wake the reader for
    # nothing (a read blocked on a socket sleeps where its writers do, and is woken when the
    # socket has room again). Counted by the thread's voluntary context switches, which are
    # a count of wake-ups, not a timing.
    ours, peer = pair
    thread_ids: list[int] = []

    def read_one() -> Any:
        thread_ids.append(threading.get_native_id())
        return ours.recv()

    thread, outcome = in_thread(read_one)
    deadline = time.monotonic() + 30  # (a bound on a hang: the thread starts and waits)
    while not thread_ids or _state(thread_ids[0]) != "S":
        assert time.monotonic() < deadline, "the reader never started waiting"
        time.sleep(0.001)
    before = _voluntary_switches(thread_ids[0])
    for number in range(200):
        ours.send(("call", f"job-{number}", (number,), {}))
        assert peer.recv() == ("call", f"job-{number}", (number,), {})
    woken = _voluntary_switches(thread_ids[0]) - before
    peer.send(("result", "job-0", 1))
    assert joined(thread, outcome) == ("result", "job-0", 1)
    assert woken < 20, f"the waiting reader was woken {woken} times by 200 writes read"


# -- authentication -----------------------------------------------------------------------------


def handshake(server_secret: bytes, client_secret: bytes) -> tuple[Any, Any]:
    """Run both sides of the handshake; return (server outcome, client outcome)."""
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(10)
    client_sock.settimeout(10)

    def server() -> None:
        try:
            authenticate_server(server_sock, server_secret)
        finally:
            # as the manager does on failure: the worker must see the refusal, not hang
            server_sock.close()

    def client() -> None:
        try:
            authenticate_client(client_sock, client_secret)
        finally:
            client_sock.close()

    threads = [in_thread(server), in_thread(client)]
    return joined(*threads[0]), joined(*threads[1])


def test_matching_secrets_authenticate_both_ways() -> None:
    assert handshake(b"s" * 32, b"s" * 32) == (None, None)


def test_manager_rejects_a_worker_with_the_wrong_secret() -> None:
    server, client = handshake(b"right" * 6, b"wrong" * 6)
    assert isinstance(server, AuthenticationError)
    assert "worker failed the challenge" in str(server)
    # the worker learns it was refused (the manager hung up: a refusal or a reset, depending
    # on timing) rather than waiting forever
    assert isinstance(client, ConnectionError)


def test_worker_rejects_a_manager_with_the_wrong_secret() -> None:
    """A fake manager that does not know the secret cannot make the worker read its pickles,
    even if it skips checking the worker's answer."""
    real, fake = b"real-secret" * 3, b"fake-secret" * 3
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(10)
    client_sock.settimeout(10)

    def impostor() -> None:
        server_sock.sendall(b"c" * 32)
        server_sock.recv(32)  # the worker's answer, ignored
        theirs = b""
        while len(theirs) < 32:
            theirs += server_sock.recv(32 - len(theirs))
        server_sock.sendall(hmac.new(fake, theirs, "sha256").digest())

    thread, outcome = in_thread(impostor)
    with pytest.raises(AuthenticationError, match="manager failed the challenge"):
        authenticate_client(client_sock, real)
    joined(thread, outcome)
    server_sock.close()
    client_sock.close()


def test_a_peer_that_hangs_up_during_the_handshake_is_refused() -> None:
    server_sock, client_sock = socket.socketpair()
    client_sock.close()
    with pytest.raises((AuthenticationError, OSError)):
        authenticate_server(server_sock, b"k" * 32)
    server_sock.close()
