"""`sieve.function.get("http://...")`: run, push, map, streaming, errors and cancel over HTTP,
with the same futures and errors as local handles."""

from __future__ import annotations

import concurrent.futures
import datetime
import enum
import gc
import time
from pathlib import Path

import pytest
from _servers import Server, notebook
from pydantic import BaseModel

import sieve_jupyter as sieve
from sieve_jupyter.bundle import export_notebook
from sieve_jupyter.runtime import _files
from sieve_jupyter.spec._schema_check import SchemaCheck

TYPED_CELLS = [
    "import datetime, enum\nfrom pydantic import BaseModel\nimport sieve_jupyter as sieve",
    '''class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"

class Box(BaseModel):
    corner: tuple[int, int]
    label: str

@sieve.function(name="describe")
def describe(day: datetime.date, color: Color, box: Box, blob: bytes, ids: set[int]) -> str:
    return f"{day:%Y/%m/%d} {color.name} {box.label}@{box.corner} {blob!r} {sorted(ids)}"''',
    """class Node(BaseModel):
    value: int
    children: "list[Node]" = []

@sieve.function(name="total")
def total(tree: Node) -> int:
    return tree.value + sum(total(child) for child in tree.children)""",
]


class Color(enum.Enum):  # (the client's own types: what crosses is their JSON form)
    RED = "red"
    BLUE = "blue"


class Box(BaseModel):
    corner: tuple[int, int]
    label: str


def test_run_push_and_map(main_server: Server) -> None:
    remote = sieve.function.get(main_server.url)
    assert remote.name == "multiplier"
    assert remote.run(6, 7) == 42 and remote.run(x1=2, x2=5) == 10
    future = remote.push(3, 4)
    assert isinstance(future, sieve.JobFuture) and isinstance(future, concurrent.futures.Future)
    assert future.result(60) == 12 and future.status == sieve.JobStatus.FINISHED
    assert future.started_at is not None
    adder = sieve.function.get(f"{main_server.url}/functions/adder")
    assert list(adder.map([1, 2, 3], [10, 20, 30])) == [11, 22, 33]
    jobs = [remote.push(2, i) for i in range(20)]
    assert sorted(f.result(60) for f in concurrent.futures.as_completed(jobs)) == [
        2 * i for i in range(20)
    ]


def test_logs_and_streams_arrive_on_the_future(main_server: Server) -> None:
    counter = sieve.function.get(f"{main_server.url}/functions/counter")
    assert list(counter.run(4)) == [0, 1, 4, 9]
    future = counter.push(3)
    assert list(future.stream(60)) == [0, 1, 4]
    assert future.stdout == "item 0\nitem 1\nitem 2\n"
    assert future.result() == [0, 1, 4]


def test_what_a_prediction_printed_shows_where_its_caller_prints(
    main_server: Server, capfd: pytest.CaptureFixture[str]
) -> None:
    # As a local handle's worker output does: `.run()` writes it before it returns, and a
    # pushed prediction's output is written as it arrives (this is a script, not a kernel).
    adder = sieve.function.get(f"{main_server.url}/functions/adder")
    adder.run(0)  # (the adder's setup output goes with its first call)
    capfd.readouterr()
    assert adder.run(1, 2) == 3
    printed = capfd.readouterr().out
    assert printed.startswith("adding 1 2 ") and printed.count("\n") == 1, printed
    counter = sieve.function.get(f"{main_server.url}/functions/counter")
    assert counter.push(2).result(60) == [0, 1]
    assert capfd.readouterr().out == "item 0\nitem 1\n"
    fails = sieve.function.get(f"{main_server.url}/functions/fails")
    with pytest.raises(sieve.RemoteError):
        fails.run("bad day")
    assert capfd.readouterr().out == ""  # (the traceback is the error's, not printed output)


def test_errors_are_remote_errors_and_input_errors(main_server: Server) -> None:
    fails = sieve.function.get(f"{main_server.url}/functions/fails")
    with pytest.raises(sieve.RemoteError) as raised:
        fails.run("bad day")
    assert raised.value.type_name.endswith("Unhappy") and "bad day" in raised.value.message
    assert "raise Unhappy(message)" in raised.value.traceback
    future = fails.push("later")
    with pytest.raises(sieve.RemoteError):
        future.result(60)
    assert future.status == sieve.JobStatus.ERROR
    remote = sieve.function.get(main_server.url)
    with pytest.raises(sieve.InputError) as bad:
        remote.run(1, "two")
    assert bad.value.field == "x2"
    with pytest.raises(TypeError):
        remote.run(1, 2, 3)


def test_inputs_are_checked_before_anything_is_sent(main_bundle: object) -> None:
    """As a local handle's: `push` itself raises, and the server never sees the call (its
    `--access-log` names every request it got)."""
    server = Server(main_bundle, "--access-log")  # type: ignore[arg-type]
    try:
        remote = sieve.function.get(server.url)
        assert remote.name == "multiplier"  # (the schema is read once, with the name)
        with pytest.raises(sieve.InputError) as bad:
            remote.push(1, "two")
        assert bad.value.field == "x2" and "'two' is not of type 'integer'" in str(bad.value)
        with pytest.raises(sieve.InputError, match=r"x2: \[2\] is not of type 'integer'"):
            remote.run(1, [2])
        with pytest.raises(TypeError, match="multiplier: missing a required argument: 'x2'"):
            remote.push(1)
        with pytest.raises(TypeError, match="unexpected keyword argument 'x3'"):
            remote.run(x1=1, x2=2, x3=3)
        with pytest.raises(sieve.InputError) as bad:
            list(remote.map([1], ["x"]))
        assert bad.value.field == "x2"
        assert remote.run(1, 2) == 2  # the one call that went out
    finally:
        assert server.stop() == 0
    lines = server.output.splitlines()
    assert any('"GET /openapi.json HTTP/1.1" 200' in line for line in lines), server.output
    posted = [line for line in lines if '"POST ' in line]
    assert len(posted) == 1 and '"POST /predictions HTTP/1.1" 200' in posted[0], server.output


def test_where_the_client_cannot_check_the_server_s_answer_raises_the_same(
    main_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a validator here (a worker's environment may lack it), the server's 422 becomes
    the same errors: from `run`, and from a pushed job's `result()`."""
    monkeypatch.setattr(SchemaCheck, "if_available", classmethod(lambda cls, schema: None))
    remote = sieve.function.get(main_server.url)
    with pytest.raises(sieve.InputError) as bad:
        remote.run(1, "two")
    assert bad.value.field == "x2" and "'two' is not of type 'integer'" in str(bad.value)
    future = remote.push(1, "two")
    with pytest.raises(sieve.InputError) as bad:
        future.result(60)
    assert bad.value.field == "x2"
    with pytest.raises(TypeError, match="multiplier: missing a required argument: 'x2'"):
        remote.run(1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'x3'"):
        remote.run(x1=1, x2=2, x3=3)


def test_arguments_of_the_types_a_local_handle_takes_arrive_as_those_types(
    tmp_path: Path,
) -> None:
    """Dates, enums, pydantic models, bytes and sets: sent as JSON, validated back into the
    function's own types in its worker."""
    export_notebook(notebook(TYPED_CELLS, tmp_path / "typed.ipynb"), tmp_path / "bundle")
    server = Server(tmp_path / "bundle")
    try:
        remote = sieve.function.get(server.url)
        day, box = datetime.date(2026, 12, 6), Box(corner=(1, 2), label="b")
        expected = "2026/12/06 BLUE b@(1, 2) b'\\x00\\xff' [1, 3]"
        assert remote.run(day, Color.BLUE, box, b"\x00\xff", {3, 1}) == expected
        assert remote.push(day, Color.BLUE, box, b"\x00\xff", {1, 3}).result(60) == expected
        # (bytes sent by any client: a data URL, or text, taken as its UTF-8)
        body = {"day": "2026-12-06", "color": "red", "box": {"corner": [0, 0], "label": "t"}}
        answer = server.predict({"input": {**body, "blob": "hi", "ids": []}}).json()
        assert answer["output"] == "2026/12/06 RED t@(0, 0) b'hi' []", answer
        broken = {**body, "blob": "data:application/octet-stream;base64,%%%", "ids": []}
        refused = server.predict({"input": broken})
        assert refused.status_code == 422, refused.text
        (detail,) = refused.json()["detail"]
        assert (
            detail["loc"] == ["body", "input", "blob"] and "not a valid data URL" in detail["msg"]
        )
        with pytest.raises(sieve.InputError) as bad:
            remote.run(day, "green", box, b"", set())
        assert bad.value.field == "color" and "'green' is not one of" in str(bad.value)
        with pytest.raises(sieve.InputError, match=r"\(at box\['corner'\]\[1\]\)"):
            remote.run(day, Color.RED, {"corner": [1, "two"], "label": "x"}, b"", set())
        with pytest.raises(TypeError, match="has no JSON form"):
            remote.run(day, Color.RED, box, b"", {object()})
        # a recursive type: its definitions live among the document's components
        total = sieve.function.get(f"{server.url}/functions/total")
        tree = {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}
        assert total.run(tree) == 6
        tree["children"][0]["children"][0]["value"] = "three"  # type: ignore[index]
        with pytest.raises(sieve.InputError) as bad:
            total.run(tree)
        assert bad.value.field == "tree" and "'three' is not of type 'integer'" in str(bad.value)
    finally:
        assert server.stop() == 0


def test_a_form_and_a_repr_from_what_the_server_says(main_server: Server) -> None:
    url = f"{main_server.url}/functions/adder"
    adder = sieve.function.get(url)
    assert repr(adder) == f"<sieve remote function {url}>"  # (a repr sends no request)
    form = sieve.form(adder)
    assert repr(adder) == f"<sieve remote function adder(x1: int, x2: int = 10) -> int at {url}>"
    assert adder.spec.metadata.title == "Adds" and "Adds" in form.children[1].value
    assert list(form.fields) == ["x1", "x2"]
    future = form.set(x1=2, x2=3).submit()
    assert future is not None and future.result(60) == 5
    form.reset()  # (the default, 10, comes from the schema the server published)
    assert form.set(x1=2).submit() is not None and form.futures[-1].result(60) == 12


def test_cancel_reaches_the_server(main_server: Server) -> None:
    sleeper = sieve.function.get(f"{main_server.url}/functions/sleeper")
    future = sleeper.push(60, "never")
    deadline = time.monotonic() + 60
    while future.status != sieve.JobStatus.PROCESSING:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert future.cancel() and future.status == sieve.JobStatus.CANCELLED
    body = main_server.client.get(f"/functions/sleeper/predictions/{future.job_id}").json()
    deadline = time.monotonic() + 60
    while body["status"] != "canceled":
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
        body = main_server.client.get(f"/functions/sleeper/predictions/{future.job_id}").json()


def test_files_travel_both_ways(main_server: Server, tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "in.bin"
    path.write_bytes(b"abc" * 100)
    size = sieve.function.get(f"{main_server.url}/functions/file-size")
    assert size.run(sieve.File(str(path))) == 300
    make = sieve.function.get(f"{main_server.url}/functions/make-file")
    try:
        made = make.run(64)
        assert isinstance(made, sieve.File)
        assert pathlib.Path(made.path).read_bytes() == b"x" * 64
        # Kept in the process's file store by content, for as long as a File holds it: the
        # same output again is the same file, and one no File holds counts as spare (removed
        # beyond the store's budget), so many calls do not fill the disk.
        store = _files.store()
        assert pathlib.Path(made.path).is_relative_to(store.root)
        again = make.run(64)
        assert again.path == made.path
        spare = store.spare()
        del made, again
        gc.collect()
        assert store.spare() == spare + 64
    finally:
        pathlib.Path("/tmp/sieve-test-out-64.bin").unlink(missing_ok=True)
