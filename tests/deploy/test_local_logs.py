"""A local deployment's log: what its server prints goes through a keeper process into
``server.log``, rotated at a size (a few files in all, as a Docker deployment's log is capped),
read back across its files, followed across a rotation, and gone with the version."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from support import processes_under, wait_for

from sieve_jupyter.backends._identity import ProcessIdentity
from sieve_jupyter.deploy._local import spawn_server
from sieve_jupyter.deploy._logs import _follow_file
from sieve_jupyter.deploy._paths import log_lines

#: 101 bytes a line, so 99 fit in a file of 10,000
_LIMIT = 10_000


def _line(i: int) -> str:
    return f"line {i:04d} " + "x" * 90 + "\n"


def _spawn(folder: Path, script: str) -> tuple[ProcessIdentity, ProcessIdentity]:
    """Start `script` as a server is started, its output kept in `folder`/server.log."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        command = [sys.executable, "-c", script, str(sock.fileno())]
        return spawn_server(
            command, sock, folder / "server.log", folder, dict(os.environ), log_bytes=_LIMIT
        )


def test_the_log_is_rotated_by_whole_lines_and_read_back_across_its_files(
    tmp_path: Path,
) -> None:
    server, keeper = _spawn(
        tmp_path, "for i in range(400):\n    print(f'line {i:04d} ' + 'x' * 90, flush=True)"
    )
    # The keeper ends once the server's output has (it has read and written all of it).
    assert keeper.wait_gone(60)
    assert not server.is_alive()

    files = sorted(p.name for p in tmp_path.glob("server.log*"))
    assert files == ["server.log", "server.log.1", "server.log.2"]
    # 400 lines: four files filled (99 lines each), the oldest two dropped, 4 lines in the
    # current one; no file over the limit, none cut inside a line.
    texts = {name: (tmp_path / name).read_text() for name in files}
    assert [len(texts[name].splitlines()) for name in files] == [4, 99, 99]
    assert all(len(text.encode()) <= _LIMIT for text in texts.values())
    kept = texts["server.log.2"] + texts["server.log.1"] + texts["server.log"]
    assert kept == "".join(_line(i) for i in range(198, 400))
    # Read back as the last lines of the log, across the files.
    assert log_lines(tmp_path, 10) == [_line(i) for i in range(390, 400)]
    assert log_lines(tmp_path, 1000) == [_line(i) for i in range(198, 400)]
    assert processes_under(tmp_path) == []


def test_following_the_log_reads_across_a_rotation(tmp_path: Path) -> None:
    """The server writes 50 lines, waits for the follower to have them, then 100 more (the log
    rotates once) and waits for the follower to have those before it ends: the follower sees
    each line once, in order, across the rotation."""
    go, done = tmp_path / "go", tmp_path / "done"
    script = (
        "import os, time\n"
        "def write(lines, until):\n"
        "    for i in lines:\n"
        "        print(f'line {i:04d} ' + 'x' * 90, flush=True)\n"
        "    while not os.path.exists(until):\n"
        "        time.sleep(0.01)\n"
        f"write(range(50), {str(go)!r})\n"
        f"write(range(50, 150), {str(done)!r})\n"
    )
    server, keeper = _spawn(tmp_path, script)
    followed: list[str] = []
    wait_for(lambda: (tmp_path / "server.log").exists(), timeout=30)

    def follow() -> Iterator[str]:
        return _follow_file(tmp_path / "server.log", server.is_alive, lines=1000)

    follower = threading.Thread(target=lambda: followed.extend(follow()), daemon=True)
    follower.start()
    wait_for(lambda: len(followed) >= 50, timeout=60)
    go.touch()
    wait_for(lambda: len(followed) >= 150, timeout=60)
    assert (tmp_path / "server.log.1").exists()  # (it did rotate)
    done.touch()
    follower.join(60)
    assert not follower.is_alive()
    assert followed == [_line(i) for i in range(150)]
    assert keeper.wait_gone(60)
