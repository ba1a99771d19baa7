"""Following a build's stream: the failing step and its output tail are what a user sees."""

from __future__ import annotations

from sieve_jupyter.build import BuildLog


def test_lines_are_split_across_chunks_and_steps_are_tracked() -> None:
    log = BuildLog()
    shown: list[str] = []
    for chunk in (
        {"stream": "Step 1/3 : FROM base\n"},
        {"stream": " ---> abc123\nStep 2/3 : RUN pip install nope-"},
        {"stream": "package\n"},
        {"stream": "ERROR: No matching distribution found for nope-package\n"},
    ):
        shown += log.feed(chunk)
    assert shown[-2] == "Step 2/3 : RUN pip install nope-package"
    assert log.step == "RUN pip install nope-package"
    assert log.tail == "ERROR: No matching distribution found for nope-package"


def test_an_error_chunk_records_the_message_and_keeps_the_failing_step() -> None:
    log = BuildLog()
    log.feed({"stream": "Step 4/9 : RUN apt-get install -y nosuch\n"})
    log.feed({"stream": "E: Unable to locate package nosuch\n"})
    lines = log.feed(
        {"errorDetail": {"code": 100, "message": "returned a non-zero code: 100"}, "error": "x"}
    )
    assert log.error == "x"
    assert lines[-1] == "ERROR: x"
    assert log.step == "RUN apt-get install -y nosuch"
    assert "Unable to locate package nosuch" in log.tail


def test_progress_redraws_keep_only_the_last_drawing_and_tail_is_bounded() -> None:
    log = BuildLog(tail_lines=3)
    log.feed({"stream": "Step 1/1 : RUN x\n"})
    log.feed({"stream": "10%\r50%\r100%\n"})
    for i in range(5):
        log.feed({"stream": f"line {i}\n"})
    assert log.tail == "line 2\nline 3\nline 4"
    assert log.feed({"stream": "unterminated"}) == []
    assert log.finish() == ["unterminated"]


def test_pull_status_chunks_become_readable_lines() -> None:
    log = BuildLog()
    assert log.feed({"status": "Pulling fs layer", "id": "a1b2"}) == ["a1b2: Pulling fs layer"]
    assert log.feed({"status": "Digest: sha256:..."}) == ["Digest: sha256:..."]
    assert log.feed({"aux": {"ID": "sha256:..."}}) == []
