"""`sieve.File`s that travel with their content (`runtime/_files.py`), over real socket pairs.

A channel with `files_by_content` set is what the kernel uses towards a container (and a
container towards the kernel): each File's content goes along, and arrives as a file in the
receiver's store. Sender and receiver share this process, so the tests use a store of their own
and check the received paths are in it, never the sender's.
"""

from __future__ import annotations

import copy
import http.server
import os
import pickle
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sieve_jupyter.runtime import Audio, File, Image, _files
from sieve_jupyter.runtime.protocol import Channel, UndecodableMessage


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_files.FileStore]:
    """A private store for what arrives (the process's own one is left alone)."""
    made = _files.FileStore(str(tmp_path / "stores"))
    (tmp_path / "stores").mkdir()
    monkeypatch.setattr(_files, "_store", made)
    yield made
    made.remove()


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    left, right = socket.socketpair()
    sender, receiver = Channel(left), Channel(right)
    sender.files_by_content = True
    yield sender, receiver
    sender.close()
    receiver.close()


def transfer(pair: tuple[Channel, Channel], message: Any) -> Any:
    sender, receiver = pair
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(sender.send(message)))
    thread.start()
    received = receiver.recv()
    thread.join(30)
    assert outcome == [None]
    return received


def make(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.parametrize("size", [10, 3_000_000], ids=["inline", "descriptor"])
def test_a_file_arrives_as_a_local_copy_with_its_name_and_type(
    pair: tuple[Channel, Channel], store: _files.FileStore, tmp_path: Path, size: int
) -> None:
    original = make(tmp_path, "frame.png", size)
    received = transfer(pair, ("call", Image(original)))[1]
    assert type(received) is Image
    assert received.path != str(original) and received.path.startswith(store.root)
    assert os.path.basename(received.path) == "frame.png"
    assert Path(received.path).read_bytes() == original.read_bytes()
    assert received.url is None


def test_the_same_content_is_copied_once(
    pair: tuple[Channel, Channel], store: _files.FileStore, tmp_path: Path
) -> None:
    original = make(tmp_path, "clip.mp4", 2_000_000)
    first = transfer(pair, Video_of(original))
    written = os.stat(first.path)
    again = transfer(pair, Video_of(original))
    assert again.path == first.path
    assert os.stat(again.path).st_mtime_ns == written.st_mtime_ns  # not written again
    # the same bytes under another name: linked, not copied
    renamed = tmp_path / "other.mp4"
    os.link(original, renamed)
    third = transfer(pair, Video_of(renamed))
    assert os.path.basename(third.path) == "other.mp4"
    assert os.stat(third.path).st_ino == written.st_ino


def Video_of(path: Path) -> Any:  # noqa: N802 - reads like the type it makes
    from sieve_jupyter.runtime import Video

    return Video(path)


def test_a_changed_file_is_sent_again(
    pair: tuple[Channel, Channel], store: _files.FileStore, tmp_path: Path
) -> None:
    path = make(tmp_path, "data.bin", 200_000)
    first = transfer(pair, File(path))
    path.write_bytes(b"new content" * 30_000)
    second = transfer(pair, File(path))
    assert second.path != first.path
    assert Path(second.path).read_bytes() == b"new content" * 30_000


def test_many_files_in_one_message_all_arrive(
    pair: tuple[Channel, Channel], store: _files.FileStore, tmp_path: Path
) -> None:
    # more large files than one frame carries descriptors: the rest travel as buffers
    originals = [make(tmp_path, f"f{i}.bin", 70_000 + i) for i in range(80)]
    received = transfer(pair, [Audio(p) for p in originals])
    assert [Path(r.path).read_bytes() for r in received] == [p.read_bytes() for p in originals]
    assert all(type(r) is Audio for r in received)


def test_a_missing_file_fails_before_anything_is_written(
    pair: tuple[Channel, Channel], store: _files.FileStore, tmp_path: Path
) -> None:
    sender, receiver = pair
    gone = tmp_path / "gone.png"
    with pytest.raises(ValueError, match="gone.png") as caught:
        sender.send(("call", File(gone)))
    assert "Fix: pass a file that exists" in str(caught.value)
    with pytest.raises(ValueError, match="not a regular file"):
        sender.send(("call", File(tmp_path)))
    sender.send("next")
    assert receiver.recv() == "next"  # nothing of the failed messages went out


def test_a_file_truncated_while_it_is_sent_is_reported(
    pair: tuple[Channel, Channel], store: _files.FileStore, tmp_path: Path
) -> None:
    sender, receiver = pair
    path = make(tmp_path, "shrinking.bin", 500_000)
    frame = sender.encode(("call", File(path)))
    path.write_bytes(b"short")  # after it was pickled, before its content is read
    thread = threading.Thread(target=sender.write, args=(frame,))
    thread.start()
    with pytest.raises(UndecodableMessage, match="shrinking.bin"):
        receiver.recv()
    thread.join(30)
    sender.send("next")
    assert receiver.recv() == "next"


def test_files_travel_by_reference_where_files_are_shared(
    pair: tuple[Channel, Channel], tmp_path: Path
) -> None:
    sender, _ = pair
    sender.files_by_content = False
    path = make(tmp_path, "x.bin", 100)
    received = transfer(pair, File(path))
    assert received.path == str(path)
    # outside a channel (the user's own pickles, copies) a File is its path too
    assert pickle.loads(pickle.dumps(File(path))).path == str(path)
    assert copy.deepcopy(Image(path)) == Image(path)


def test_carrying_content_puts_every_file_inside_the_pickle(
    store: _files.FileStore, tmp_path: Path
) -> None:
    """What Ray carries (`carrying_content`): no descriptor can go along, so a large content is
    an out-of-band buffer (Ray's object store moves those), a small one in the stream."""
    small, large = make(tmp_path, "small.txt", 100), make(tmp_path, "large.bin", 3 * 2**20)
    buffers: list[pickle.PickleBuffer] = []
    with _files.carrying_content():
        data = pickle.dumps([File(small), Image(large)], protocol=5, buffer_callback=buffers.append)
    assert [memoryview(b).nbytes for b in buffers] == [large.stat().st_size]
    small.unlink()
    large.unlink()  # (what arrives is the content that travelled, not the sender's files)
    copies = pickle.loads(data, buffers=buffers)
    assert [type(c) for c in copies] == [File, Image]
    assert all(c.path.startswith(store.root) for c in copies)
    assert [os.path.getsize(c.path) for c in copies] == [100, 3 * 2**20]
    # outside it, and with carry=False, a File is its path again
    assert pickle.loads(pickle.dumps(File(copies[0].path))).path == copies[0].path
    with _files.carrying_content(carry=False):
        assert pickle.loads(pickle.dumps(File(copies[0].path))).path == copies[0].path


def test_a_content_the_peer_holds_goes_as_a_reference(
    store: _files.FileStore, tmp_path: Path
) -> None:
    """`for_peer(held)`: what the peer confirmed it holds is not sent again; `carried` lists
    what was, for the sender to count as held once the peer has unpickled it."""
    path = make(tmp_path, "clip.bin", 2 * 2**20)
    first = _files.for_peer(set())
    with _files.carrying_content(outgoing=first):
        data = pickle.dumps(File(path), protocol=5)
    assert len(data) > 2 * 2**20 and first.carried == {_files.digest_of(str(path)): 2 * 2**20}
    received = pickle.loads(data)
    again = _files.for_peer(set(first.carried))
    with _files.carrying_content(outgoing=again):
        reference = pickle.dumps(File(path), protocol=5)
    assert len(reference) < 1024 and again.carried == {}
    assert pickle.loads(reference).path == received.path  # (the copy it holds)
    store.remove()  # a peer that lost its store says so, naming the file
    with pytest.raises(ValueError, match=r"'clip.bin' .* does not: its store was removed"):
        pickle.loads(reference)


def test_a_reference_finds_the_content_after_user_code_changed_its_copy(
    store: _files.FileStore, tmp_path: Path
) -> None:
    """A process sent references (a Ray worker on another machine) keeps each content apart
    from the file user code gets: a call that changed its copy does not change what the next
    reference finds. Without originals the content is lost with the change."""
    path = make(tmp_path, "log.txt", 100)
    original = path.read_bytes()
    with _files.carrying_content():
        data = pickle.dumps(File(path), protocol=5)
    reference = _reference_to(path)

    store.keeps_originals = True
    first = pickle.loads(data)
    Path(first.path).write_bytes(b"changed by the call")  # (in place: the same file)
    again = pickle.loads(reference)
    assert Path(again.path).read_bytes() == original
    assert Path(first.path).read_bytes() == b"changed by the call"  # (kept: see below)
    other = pickle.loads(_reference_to(path, name="renamed.txt"))
    assert Path(other.path).read_bytes() == original  # (a copy under the other name)

    store.keeps_originals = False
    store.remove()
    plain = pickle.loads(data)
    Path(plain.path).write_bytes(b"changed by the call")
    with pytest.raises(ValueError, match="does not: its store was removed"):
        pickle.loads(reference)


def test_a_file_user_code_changed_keeps_its_change_when_the_content_comes_again(
    store: _files.FileStore, tmp_path: Path
) -> None:
    """A result the notebook drew on is not overwritten by the next result with the same
    content: that one goes beside it, and the one after reuses it."""
    path = make(tmp_path, "frame.png", 200 * 1024)
    with _files.carrying_content():
        data = pickle.dumps(File(path), protocol=5)
    first = pickle.loads(data)
    Path(first.path).write_bytes(b"boxes drawn on it")
    second = pickle.loads(data)
    assert second.path != first.path and os.path.basename(second.path) == "frame.png"
    assert Path(second.path).read_bytes() == path.read_bytes()
    assert Path(first.path).read_bytes() == b"boxes drawn on it"
    assert pickle.loads(data).path == second.path


def _reference_to(path: Path, name: str | None = None) -> bytes:
    """A pickled File whose content the receiver is said to hold."""
    source = path if name is None else path.with_name(name)
    if name is not None:
        source.write_bytes(path.read_bytes())
    held = _files.for_peer({_files.digest_of(str(path))})
    with _files.carrying_content(outgoing=held):
        return pickle.dumps(File(source), protocol=5)


def test_a_process_can_carry_content_by_default(store: _files.FileStore, tmp_path: Path) -> None:
    """A Ray actor whose kernel does not see its files pickles every File with its content, on
    any thread (Ray pickles its answers; its outbox thread, its side messages)."""
    path = make(tmp_path, "made-here.txt", 10)
    _files.carry_content_by_default(True)
    try:
        seen: list[str] = []
        thread = threading.Thread(
            target=lambda: seen.append(pickle.loads(pickle.dumps(File(path))).path)
        )
        thread.start()
        thread.join(30)
        assert seen and seen[0] != str(path) and seen[0].startswith(store.root)
        # a local channel that pickled by reference leaves the process's default behind
        _files.sending_content(_files.Outgoing())
        _files.sending_content(None)
        assert pickle.loads(pickle.dumps(File(path))).path.startswith(store.root)
    finally:
        _files.carry_content_by_default(False)
    assert pickle.loads(pickle.dumps(File(path))).path == str(path)


class _Server(http.server.ThreadingHTTPServer):
    hits: int = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        assert isinstance(self.server, _Server)
        self.server.hits += 1
        body = b"remote image bytes"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    made = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=made.serve_forever, daemon=True)
    thread.start()
    yield made
    made.shutdown()
    made.server_close()


def test_a_url_travels_as_a_url_and_is_fetched_once_where_it_is_read(
    pair: tuple[Channel, Channel], store: _files.FileStore, server: _Server
) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/pics/cat.png"
    received = transfer(pair, File(url=url))
    assert server.hits == 0  # not fetched to be sent
    assert received.url == url
    assert Path(received.path).read_bytes() == b"remote image bytes"
    assert os.path.basename(received.path) == "cat.png"
    assert File(url=url).path == received.path  # once per URL in a process
    assert server.hits == 1
    # a URL already fetched here takes its content along: the receiver need not fetch it
    fetched = File(url=url)
    fetched.path  # noqa: B018 - reading it fetches it
    again = transfer(pair, fetched)
    assert again.url == url and again._local is not None and server.hits == 1


def test_a_file_url_is_a_local_path(
    pair: tuple[Channel, Channel], store: _files.FileStore, tmp_path: Path
) -> None:
    path = make(tmp_path, "local.txt", 300)
    received = transfer(pair, File(url=path.as_uri()))
    assert Path(received.path).read_bytes() == path.read_bytes()


def test_stores_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / "sieve-files-999999999-abc"
    (dead / "key").mkdir(parents=True)
    live = tmp_path / f"sieve-files-{os.getppid()}-abc"
    live.mkdir()
    fresh = _files.FileStore(str(tmp_path))
    assert fresh.root.startswith(str(tmp_path / f"sieve-files-{os.getpid()}-"))
    assert not dead.exists() and live.exists()
    fresh.remove()
    assert sorted(os.listdir(tmp_path)) == [live.name]


# -- what a store keeps while its process lives ------------------------------------------------


@pytest.fixture
def small_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_files.FileStore]:
    """A private store that keeps 1 MiB of contents no File points at."""
    (tmp_path / "small").mkdir()
    made = _files.FileStore(str(tmp_path / "small"), spare_bytes=2**20)
    monkeypatch.setattr(_files, "_store", made)
    yield made
    made.remove()


def _arrival(path: Path) -> bytes:
    """A pickled File that carries `path`'s content (as a container's result would)."""
    with _files.carrying_content():
        return pickle.dumps(File(path), protocol=5)


def test_contents_no_file_points_at_go_beyond_the_budget_oldest_first(
    small_store: _files.FileStore, tmp_path: Path
) -> None:
    """A long notebook (or a server's worker) receiving many files does not fill its disk: what
    no File points at any more is kept up to the budget, the longest unused going first; what
    a File points at stays, however far over the budget the store is."""
    arrivals = [_arrival(make(tmp_path, f"frame-{i}.bin", 400_000)) for i in range(5)]
    kept = pickle.loads(arrivals[0])  # (the notebook keeps this result)
    gone = [pickle.loads(data).path for data in arrivals[1:4]]  # (dropped at once)
    assert small_store.spare() == 3 * 400_000 - 400_000  # (two fit in 1 MiB: the oldest went)
    assert not os.path.exists(gone[0]) and all(os.path.exists(p) for p in gone[1:])
    assert not os.path.exists(os.path.dirname(gone[0]))  # (its folder too)

    small_store.spare_bytes = 0
    last = pickle.loads(arrivals[4])
    assert small_store.spare() == 0 and not any(os.path.exists(p) for p in gone)
    assert Path(kept.path).read_bytes() == Path(tmp_path / "frame-0.bin").read_bytes()
    assert Path(last.path).read_bytes() == Path(tmp_path / "frame-4.bin").read_bytes()
    del kept, last
    assert small_store.spare() == 0 and os.listdir(small_store.root) == []


def test_a_spare_content_that_arrives_again_is_reused_and_owned_again(
    small_store: _files.FileStore, tmp_path: Path
) -> None:
    data = _arrival(make(tmp_path, "clip.bin", 300_000))
    first = pickle.loads(data)
    path, inode = first.path, os.stat(first.path).st_ino
    del first
    assert small_store.spare() == 300_000
    again = pickle.loads(data)
    assert again.path == path and os.stat(path).st_ino == inode  # (not written again)
    assert small_store.spare() == 0
    small_store.spare_bytes = 0
    pickle.loads(_arrival(make(tmp_path, "other.bin", 10)))  # (trims, but not what is owned)
    assert Path(again.path).read_bytes() == (tmp_path / "clip.bin").read_bytes()


def test_a_content_two_files_point_at_stays_until_both_are_gone(
    small_store: _files.FileStore, tmp_path: Path
) -> None:
    small_store.spare_bytes = 0
    data = _arrival(make(tmp_path, "shared.bin", 1000))
    one, two = pickle.loads(data), pickle.loads(data)
    assert one.path == two.path
    del one
    assert small_store.spare() == 0 and os.path.exists(two.path)
    path = two.path
    del two
    assert small_store.spare() == 0 and not os.path.exists(path)


def test_originals_kept_for_references_are_never_trimmed(
    small_store: _files.FileStore, tmp_path: Path
) -> None:
    """A process sent references (a Ray worker) must find each content it confirmed: the
    originals stay; the copies handed out go like any content."""
    small_store.spare_bytes = 0
    small_store.keeps_originals = True
    path = make(tmp_path, "weights.bin", 5000)
    copy_path = pickle.loads(_arrival(path)).path  # (dropped at once)
    assert small_store.spare() == 0 and not os.path.exists(copy_path)
    again = pickle.loads(_reference_to(path))
    assert Path(again.path).read_bytes() == path.read_bytes()


def test_a_store_stays_consistent_under_concurrent_arrivals_and_drops(
    small_store: _files.FileStore, tmp_path: Path
) -> None:
    """Threads receiving the same and different contents while others drop theirs, with
    nothing spare kept: every File alive finds its content, and once all are gone nothing
    is left."""
    small_store.spare_bytes = 0
    arrivals = [_arrival(make(tmp_path, f"part-{i}.bin", 70_000 + i)) for i in range(4)]
    sizes = [70_000 + i for i in range(4)]
    failures: list[BaseException] = []

    def receive(seed: int) -> None:
        try:
            held: list[File] = []
            for round_ in range(150):
                index = (seed + round_) % 4
                file = pickle.loads(arrivals[index])
                assert os.path.getsize(file.path) == sizes[index]
                held.append(file)
                if len(held) > 2:
                    dropped = held.pop(0)
                    assert os.path.exists(dropped.path)  # (owned until now)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=receive, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert small_store.spare() == 0
    leftover = [name for _, _, names in os.walk(small_store.root) for name in names]
    assert leftover == []


def test_a_downloaded_url_is_kept_while_a_file_points_at_it(
    small_store: _files.FileStore, server: _Server
) -> None:
    small_store.spare_bytes = 0
    url = f"http://127.0.0.1:{server.server_address[1]}/pics/cat.png"
    file = File(url=url)
    path = file.path
    assert File(url=url).path == path and server.hits == 1  # (the store had it)
    del file
    assert small_store.spare() == 0 and not os.path.exists(path)
    assert Path(File(url=url).path).read_bytes() == b"remote image bytes"
    assert server.hits == 2


def test_a_peer_keeping_originals_is_told_to_drop_the_least_recently_used(
    store: _files.FileStore, tmp_path: Path
) -> None:
    """`PeerContents` bounds what a Ray worker keeps for the kernel's references: beyond the
    budget, the contents least recently sent or referred to are forgotten on the kernel's
    side, and the next message, unpickled there before its own values, drops their originals.
    A content sent again after that arrives whole and is held again."""
    store.keeps_originals = True
    peer = _files.PeerContents(limit_bytes=250_000)
    paths = [make(tmp_path, f"take-{i}.bin", 100_000) for i in range(3)]
    digests = [_files.digest_of(str(p)) for p in paths]

    def message(*files: Path) -> bytes:
        """What the kernel sends: the forget first, then the Files; confirmed once sent (as
        a call that ran)."""
        forget = peer.take_forget()
        outgoing = peer.outgoing()
        with _files.carrying_content(outgoing=outgoing):
            data = pickle.dumps((forget, [File(f) for f in files]), protocol=5)
        peer.sent(outgoing)
        pickle.loads(data)
        peer.confirm(list(outgoing.carried))
        return data

    def originals() -> list[str]:
        return sorted(n for n in os.listdir(store.root) if n.endswith(".original"))

    message(paths[0], paths[1])
    assert peer.held == {digests[0], digests[1]}
    assert len(message(paths[0])) < 1024  # (a reference) and now the most recently used
    message(paths[2])  # (300,000 bytes sent: the least recently used, take-1, is forgotten)
    assert peer.held == {digests[0], digests[2]}
    assert len(originals()) == 3  # (the worker is told with the next message)
    message()
    assert originals() == sorted(f"{digests[i]}.original" for i in (0, 2))
    again = pickle.loads(message(paths[1]))[1][0]  # (whole again: take-0 is forgotten now)
    assert Path(again.path).read_bytes() == paths[1].read_bytes()
    assert peer.held == {digests[1], digests[2]}
    # its copy was still in the store, yet the content is kept as an original again, so a
    # reference finds it after user code changed that copy
    assert f"{digests[1]}.original" in originals()
    Path(again.path).write_bytes(b"changed by the call")
    assert Path(pickle.loads(message(paths[1]))[1][0].path).read_bytes() == paths[1].read_bytes()


def test_a_forget_that_never_arrived_goes_with_the_next_message() -> None:
    peer = _files.PeerContents(limit_bytes=0)
    outgoing = peer.outgoing()
    outgoing.carried["a" * 64] = 10
    peer.sent(outgoing)
    forget = peer.take_forget()
    assert forget is not None and forget.digests == ["a" * 64]
    assert peer.take_forget() is None
    peer.forget_again(forget)  # (its call was cancelled before the worker unpickled it)
    again = peer.take_forget()
    assert again is not None and again.digests == ["a" * 64]
