"""Progress aggregation and the progress widget's state, driven by futures a test moves."""

from __future__ import annotations

from typing import Any

import pytest
from _widget_doubles import EventBus, FakeJob

from sieve_jupyter.jupyter.widgets import ProgressWidget, progress
from sieve_jupyter.jupyter.widgets._progress import format_seconds
from sieve_jupyter.jupyter.widgets._tracker import ProgressState, Ticker


class ManualTicker(Ticker):
    """Never ticks on its own: the test calls `tick()`, as the throttled thread would."""

    def add(self, client: Any) -> None:
        self.client = client


def boom() -> ValueError:
    try:
        raise ValueError("bad frame 7")
    except ValueError as exc:
        return exc


def test_counts_follow_events_and_completions_per_function() -> None:
    bus = EventBus()
    jobs = [FakeJob("resize", bus) for _ in range(3)] + [FakeJob("caption", bus) for _ in range(2)]
    state = ProgressState(jobs, events=bus)
    assert state.functions["resize"].counts["queued"] == 3
    jobs[0].start()
    assert state.functions["resize"].counts["processing"] == 1
    jobs[0].finish(1)
    jobs[1].fail(boom())
    jobs[3].finish("a")
    resize, caption = state.functions["resize"], state.functions["caption"]
    assert (resize.counts["finished"], resize.counts["error"], resize.counts["queued"]) == (1, 1, 1)
    assert (caption.counts["finished"], caption.counts["queued"]) == (1, 1)
    assert state.errors == [jobs[1]]
    assert not state.all_done
    jobs[2].finish(2)
    jobs[4].finish("b")
    assert state.all_done
    assert state.totals() == {
        "queued": 0,
        "processing": 0,
        "finished": 4,
        "error": 1,
        "cancelled": 0,
        "total": 5,
    }


def test_missed_events_are_caught_by_polling() -> None:
    jobs = [FakeJob("f") for _ in range(3)]  # no bus: nothing is published
    state = ProgressState(jobs, events=None)
    jobs[0].start()
    assert state.functions["f"].counts["processing"] == 0
    state.poll()
    assert state.functions["f"].counts["processing"] == 1


def test_already_finished_futures_count_at_once() -> None:
    job = FakeJob("f")
    job.finish(3)
    state = ProgressState([job], events=None)
    assert state.all_done and state.functions["f"].counts["finished"] == 1


def test_widget_shows_counts_errors_and_eta() -> None:
    bus = EventBus()
    jobs = [FakeJob("resize", bus) for _ in range(4)]
    widget = ProgressWidget(jobs, events=bus, ticker=ManualTicker())
    jobs[0].finish(1)
    jobs[1].fail(boom())
    jobs[2].start()
    widget.tick()
    text = widget.summary.value
    assert "resize" in text and "2/4" in text
    assert "1 queued" in text and "1 running" in text and "1 finished" in text
    assert "1 error" in text and "ETA" in text and "elapsed" in text
    assert "sieve-stripes" in text  # the running part of the bar moves
    assert "1 error</b>" in widget.errors.value and "bad frame 7" in widget.errors.value
    assert "<details" in widget.errors.value  # folded like every other detail
    jobs[2].finish(3)
    jobs[3].finish(4)
    assert widget.tick() is False  # final state drawn; the ticker drops it
    assert widget.finished and "ETA" not in widget.summary.value


def test_redraws_are_per_tick_not_per_event() -> None:
    bus = EventBus()
    jobs = [FakeJob("batch", bus) for _ in range(10_000)]
    widget = ProgressWidget(jobs, events=bus, ticker=ManualTicker())
    changes: list[str] = []
    widget.summary.observe(lambda change: changes.append(change["new"]), names="value")
    widget.errors.observe(lambda change: changes.append(change["new"]), names="value")
    for index, job in enumerate(jobs):
        job.finish(index)
        if index % 2_500 == 2_499:
            widget.tick()
    # 10,000 completions, four ticks: at most one summary (and errors) update per tick
    assert len(changes) <= 4
    assert "10,000/10,000" in widget.summary.value


def test_job_inspector_shows_logs_outputs_and_errors() -> None:
    bus = EventBus()
    jobs = [FakeJob("gen", bus) for _ in range(2)]
    widget = ProgressWidget(jobs, events=bus, ticker=ManualTicker())
    jobs[0].start()
    jobs[0].logs.append(("stdout", "loading weights\n"))
    jobs[0].outputs.extend(["frame-1", "frame-2"])
    widget.tick()
    labels = [label for label, _ in widget.job_select.options]
    assert any(jobs[0].job_id in label for label in labels)
    widget.job_select.value = next(
        v for label, v in widget.job_select.options if jobs[0].job_id in label
    )
    assert "loading weights" in widget.job_detail.value
    assert "frame-2" in widget.job_detail.value and "2 streamed output" in widget.job_detail.value
    jobs[0].logs.append(("stderr", "warning: slow\n"))
    widget.tick()
    assert "warning: slow" in widget.job_detail.value


def test_single_future_renders_its_result() -> None:
    job = FakeJob("add")
    widget = ProgressWidget([job], events=None, ticker=ManualTicker())
    assert "queued" in widget.summary.value
    job.start()
    job.progress = (0.5, "halfway")
    widget.tick()
    assert "50%" in widget.summary.value and "halfway" in widget.summary.value
    job.finish({"sum": 3})
    widget.tick()
    assert "finished" in widget.summary.value and "sieve-stripes" not in widget.summary.value
    heading, value = widget.result.children
    assert "Result" in heading.value
    assert value.outputs[0]["data"]["application/json"] == {"sum": 3}


def test_single_future_error_shows_traceback() -> None:
    job = FakeJob("add")
    widget = ProgressWidget([job], events=None, ticker=ManualTicker())
    job.fail(boom())
    widget.tick()
    shown = widget.result.children[0].value
    assert "ValueError: bad frame 7" in shown


def test_static_fallback_holds_the_final_state() -> None:
    jobs = [FakeJob("resize") for _ in range(3)]
    widget = ProgressWidget(jobs, events=None, ticker=ManualTicker())
    jobs[0].finish(1)
    jobs[1].finish(1)
    jobs[2].fail(boom())
    widget.tick()
    bundle = widget._bundle()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "3/3" in bundle["text/html"] and "bad frame 7" in bundle["text/html"]
    assert bundle["text/plain"] == "sieve progress: 3 jobs: 2 finished, 1 error"


def test_progress_rejects_non_futures_with_a_fix() -> None:
    with pytest.raises(TypeError, match="Fix: pass what .push"):
        progress([1, 2])  # type: ignore[list-item]


def test_format_seconds() -> None:
    assert format_seconds(None) == "–"
    assert format_seconds(4.21) == "4.2 s"
    assert format_seconds(4.21, coarse=True) == "4 s"
    assert format_seconds(185) == "3 min 05 s"
    assert format_seconds(3720) == "1 h 02 min"


def test_a_waiting_job_does_not_redraw_every_tick() -> None:
    job = FakeJob("slow")
    job.start()
    widget = ProgressWidget([job], events=None, ticker=ManualTicker())
    changes: list[str] = []
    widget.summary.observe(lambda change: changes.append(change["new"]), names="value")
    for _ in range(3):
        widget.tick()  # back to back: well within one second of the clock
    assert len(changes) <= 1


def test_a_drawing_failure_is_shown_not_frozen() -> None:
    class BrokenJob(FakeJob):
        @property
        def logs(self) -> list[tuple[str, str]]:  # type: ignore[override]
            raise RuntimeError("logs unavailable")

        @logs.setter
        def logs(self, value: list[tuple[str, str]]) -> None:
            pass

    widget = ProgressWidget([BrokenJob("f")], events=None, ticker=ManualTicker())
    assert widget.failed is not None
    assert "progress display stopped: RuntimeError: logs unavailable" in widget.errors.value
    assert widget.tick() is False


def test_a_shown_widget_claims_its_jobs_output_and_counts_who_printed() -> None:
    from sieve_jupyter.jupyter._routing import _Route

    bus = EventBus()
    jobs = [FakeJob("chatty", bus) for _ in range(3)]
    for job in jobs:
        job.context = _Route({"header": {"msg_id": "cell-1"}})  # what the router notes
    widget = ProgressWidget(jobs, events=bus, ticker=ManualTicker())
    assert all(job.context.claimed for job in jobs)
    widget.claim_output()  # what displaying it does: the count of who printed shows
    for job in jobs[:2]:
        job.logs.append(("stdout", "hello\n"))
        bus.publish("log", {"job_id": job.job_id, "stream": "stdout", "text": "hello\n"})
    bus.publish("log", {"job_id": jobs[0].job_id, "stream": "stdout", "text": "again\n"})
    widget.tick()
    assert "2 jobs printed output: pick one under Jobs" in widget.printed.value
    assert widget.printed.layout.display != "none"
    widget.toggle_jobs()
    assert widget.inspector.layout.display != "none"
    labels = [label for label, _ in widget.job_select.options]
    assert jobs[0].job_id in labels[0] and len(labels) == 3  # the ones that printed first
