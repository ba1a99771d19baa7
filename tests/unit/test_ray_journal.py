"""A Ray worker's journal (backends/_ray_journal.py), written and read back on disk as the
worker and the task that reads a dead worker's journal do (the ray tier's crash tests use it
through a real actor's death)."""

from __future__ import annotations

from pathlib import Path

import cloudpickle

from sieve_jupyter.backends import _ray_journal
from sieve_jupyter.backends._ray_journal import KEEP_AT_MOST, Journal, read_journal


def _read(folder: Path) -> tuple[str, str, dict[str, object]]:
    record = read_journal(str(folder))
    assert record is not None
    state, job, kept, _ = record
    return state, job, {name: cloudpickle.loads(data) for name, data in kept.items()}


def test_it_holds_the_last_job_and_the_outcomes_not_received(tmp_path: Path) -> None:
    folder = tmp_path / "actor"
    journal = Journal(str(folder))
    for job in ("a", "b", "c"):
        journal.started(job)
        journal.finished(job)
        journal.keep(job, (f"outcome of {job}", 0, []))
    journal.received(["a"])
    journal.started("d")
    state, last, kept = _read(folder)
    assert (state, last) == ("S", "d")
    # (a's record may stay in the file: the kernel has it, and ignores it)
    assert {"b", "c"} <= set(kept) <= {"a", "b", "c"}
    assert all(kept[job] == (f"outcome of {job}", 0, []) for job in kept)
    assert not folder.exists()  # read once, then removed


def test_once_everything_is_received_older_records_are_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "actor"
    journal = Journal(str(folder))
    for job in ("first-job", "second-job"):
        journal.keep(job, (job, 0, []))
    journal.received(["first-job", "second-job"])
    journal.keep("x", ("x", 0, []))
    journal.finished("x")
    assert _read(folder) == ("F", "x", {"x": ("x", 0, [])})


def test_a_long_burst_keeps_only_what_is_not_received(tmp_path: Path) -> None:
    folder = tmp_path / "actor"
    journal = Journal(str(folder))
    big = "v" * (KEEP_AT_MOST // 2)
    # More than the compaction size in total, with two outcomes never received.
    journal.keep("kept-1", ("small", 0, []))
    for i in range(2 * _ray_journal._COMPACT_AT // len(big)):
        journal.keep(f"job-{i}", (big, 0, []))
        journal.received([f"job-{i}"])
    journal.keep("kept-2", ("small", 0, []))
    journal.started("kept-2")
    assert (folder / "outcomes").stat().st_size <= _ray_journal._COMPACT_AT + KEEP_AT_MOST
    _, _, kept = _read(folder)
    assert {"kept-1", "kept-2"} <= set(kept)
    assert all(kept[job] == ("small", 0, []) for job in ("kept-1", "kept-2"))


def test_an_outcome_too_large_is_not_kept(tmp_path: Path) -> None:
    folder = tmp_path / "actor"
    journal = Journal(str(folder))
    journal.keep("huge", (b"x" * (KEEP_AT_MOST + 1), 0, []))
    journal.started("next")
    assert _read(folder) == ("S", "next", {})


def test_no_record_reads_as_none(tmp_path: Path) -> None:
    folder = tmp_path / "actor"
    Journal(str(folder))
    assert read_journal(str(folder)) is None
    assert read_journal(str(tmp_path / "missing")) is None


def test_it_holds_how_far_the_hub_holds_the_side_messages(tmp_path: Path) -> None:
    folder = tmp_path / "actor"
    journal = Journal(str(folder))
    journal.started("a")
    record = read_journal(str(folder))
    assert record is not None and record[3] == 0  # nothing shipped yet
    journal = Journal(str(folder))
    journal.started("b")
    journal.shipped(7)
    journal.shipped(12)
    record = read_journal(str(folder))
    assert record is not None and record[3] == 12
