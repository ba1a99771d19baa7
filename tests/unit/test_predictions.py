"""A served prediction over its job: Cog's envelope, and a finished prediction keeping only that.

A server keeps up to 10,000 finished predictions for ``GET /predictions/{id}``; each one that
held its job's future kept a dozen objects alive for the garbage collector to walk on every
full pass (serve/_predictions.py). These tests use real `JobFuture`s, settled the way the
manager settles them.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from sieve_jupyter.manager import JobFuture
from sieve_jupyter.serve._predictions import Prediction, PredictionStore


def _job(job_id: str = "j1") -> JobFuture[Any]:
    return JobFuture(job_id, "adder", (1, 2), {}, streaming=False)


def _prediction(future: JobFuture[Any], **extra: Any) -> Prediction:
    return Prediction("p1", "adder", {"x1": 1, "x2": 2}, future, created_at=1.0, **extra)


def test_a_running_prediction_follows_its_job() -> None:
    future = _job()
    prediction = _prediction(future)
    assert prediction.envelope()["status"] == "starting"
    future._set_started("w1")
    envelope = prediction.envelope()
    assert envelope["status"] == "processing"
    assert envelope["started_at"] is not None and envelope["completed_at"] is None
    assert prediction.future is future and not prediction.done


def test_a_finished_prediction_keeps_its_envelope_and_lets_go_of_its_job() -> None:
    future = _job()
    future._set_started("w1")
    future._add_log("stdout", "hello\n")
    future._resolve(3)
    prediction = _prediction(future, encode=lambda value: {"sum": value})
    envelope = prediction.envelope()
    assert envelope["status"] == "succeeded"
    assert envelope["output"] == {"sum": 3}
    assert envelope["logs"] == "hello\n"
    assert envelope["metrics"]["predict_time"] >= 0
    assert envelope["completed_at"] is not None

    job = weakref.ref(future)
    del future
    gc.collect()
    assert job() is None, "the finished prediction still holds its job's future"
    assert prediction.future is None
    assert prediction.envelope() is envelope  # (the same answer every time)
    assert prediction.status == "succeeded" and prediction.done
    assert prediction.output() == {"sum": 3}
    assert prediction.finished_at is not None
    prediction.cancel()  # (over: nothing to cancel, and no error)
    assert prediction.start_envelope()["status"] == "processing"


def test_a_failed_prediction_keeps_the_error_and_the_remote_traceback_in_its_logs() -> None:
    future = _job()
    future._set_started("w1")
    error = ValueError("bad x1")
    error.remote_traceback = "Traceback (most recent call last):\nValueError: bad x1\n"  # type: ignore[attr-defined]
    future._resolve(exception=error)
    prediction = _prediction(future)
    envelope = prediction.envelope()
    assert envelope["status"] == "failed"
    assert envelope["error"] == "bad x1"
    assert envelope["output"] is None
    assert envelope["logs"].endswith("ValueError: bad x1\n")
    assert prediction.future is None and prediction.envelope()["error"] == "bad x1"


def test_the_start_webhook_of_a_job_already_done_says_it_started() -> None:
    future = _job()
    future._set_started("w1")
    future._resolve(3)
    start = _prediction(future).start_envelope()
    assert start["status"] == "processing"
    assert start["output"] is None and start["completed_at"] is None


def test_the_store_prunes_settled_predictions_by_their_finish_time() -> None:
    store = PredictionStore(keep_seconds=60)
    first = _job("j1")
    first._resolve(1)
    first.finished_at -= 120  # type: ignore[operator]  # (finished two minutes ago)
    old = Prediction("old", "adder", {}, first)
    store.add(old)
    old.envelope()  # settled
    assert old.future is None
    running = _job("j2")
    store.add(Prediction("new", "adder", {}, running))
    assert store.get("old") is None  # finished over keep_seconds ago: dropped
    assert store.get("new") is not None  # running: kept


def test_a_process_that_only_serves_keeps_a_short_job_history() -> None:
    from sieve_jupyter import config
    from sieve_jupyter.serve import ServeSettings
    from sieve_jupyter.serve._server import SERVER_JOB_HISTORY, _configure_server_process

    before = (config.job_history, config.busy_poll_us)
    try:
        _configure_server_process(ServeSettings(busy_poll_us=0))
        assert config.job_history == SERVER_JOB_HISTORY < 10_000
        assert config.busy_poll_us == 0
    finally:
        config.job_history, config.busy_poll_us = before
