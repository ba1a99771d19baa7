"""The lifecycle of a pool's workers: starting them, learning they are ready, replacing the
ones that exit, and stopping, restarting or swapping new code into them.

A worker that dies fails only the job it was running (unless its exit was expected); the calls
it had not started go back to the front of the queue and run on its replacement.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from typing import TYPE_CHECKING, Any, cast

from sieve_jupyter._errors import WorkerCrashedError
from sieve_jupyter.manager._linked_worker import LinkedWorker
from sieve_jupyter.manager._pool_base import PoolBase, SwapOutcome
from sieve_jupyter.manager._worker import WorkerConnection
from sieve_jupyter.manager._worker_base import Worker, WorkerState
from sieve_jupyter.runtime.protocol import ChannelClosed

if TYPE_CHECKING:
    from sieve_jupyter.manager._jobs import JobFuture
    from sieve_jupyter.manager._pool import WorkerPool
    from sieve_jupyter.manager._record import FunctionRecord

__all__ = ["PoolWorkers"]

#: seconds a worker's exit waits for a direct call's caller to finish reading its reply
#: connection (it ends at once when the worker is gone; this only bounds a bug)
_LANE_WAIT = 30.0


class PoolWorkers(PoolBase):
    """Starting, replacing and stopping the workers of a pool."""

    # -- worker lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start workers up to the pool size without waiting for a job (`Manager.warm`)."""
        with self.lock:
            self.ensure_open()
            if self.state == "stopped":
                self.state = "idle"
            started = self._start_workers()
        if started:
            self.publish_function()

    def _start_workers(self) -> bool:
        """Start workers up to the pool size (lock held). Returns whether any started."""
        if self._retiring or self.state == "stopped":
            return False
        started = False
        while len(self.workers) < self.size:
            worker_id = f"{self.spec.name}-w{next(self._ids)}"
            # (every PoolWorkers is the lifecycle layer of a WorkerPool)
            pool = cast("WorkerPool", self)
            worker: Worker
            if self.backend.links_workers:
                # (its engine places it and gives it its devices: see Backend.allocates_gpus)
                worker = LinkedWorker(pool, worker_id)
            else:
                gpu = self.host.gpus.acquire_for(self.spec, worker_id)
                worker = WorkerConnection(pool, worker_id, gpu)
            self.workers[worker_id] = worker
            if self.state in ("idle", "error", "stopped"):
                self.state = "starting"
            threading.Thread(
                target=self._start_worker,
                args=(worker,),
                name=f"sieve-start-{worker_id}",
                daemon=True,
            ).start()
            started = True
        return started

    def _start_worker(self, worker: Worker) -> None:
        try:
            if not self._prepared:
                self.backend.prepare(self.spec, self._setup_log)
                self._prepared = True
            host = self.host
            worker.launch(
                host.worker_environment(self.spec),
                host.labels(self.spec),
                host.config.start_timeout,
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the jobs waiting on it
            self.worker_failed_to_start(worker, exc)

    def _setup_log(self, text: str) -> None:
        """Build and setup output goes to the job that is waiting for this worker."""
        self.log(self._waiting_job(), "stderr" if text.startswith("ERROR") else "stdout", text)

    def worker_failed_to_start(
        self, worker: Worker, exc: BaseException, *, expected_exit: bool = False
    ) -> None:
        with self.lock:
            self.workers.pop(worker.worker_id, None)
            # A worker stopped while it was starting (stop, restart) did not fail: flagging an
            # error would also make the pool replace its other workers after a stop.
            stopping = worker.state is WorkerState.RETIRING or self.state == "stopped"
            worker.retire(expected=expected_exit)
            worker.move_to(WorkerState.EXITED)
            if not stopping:
                self.state = "error"
                self.last_error = f"{type(exc).__name__}: {exc}"
                remote = getattr(exc, "remote_traceback", "")
                if remote:  # (what `__setup__` raised, for whoever has no job to show it in)
                    self.last_error += f"\n\n{remote}"
            doomed: list[JobFuture[Any]] = []
            if all(w.state is WorkerState.EXITED for w in self.workers.values()):
                doomed, self.queue = list(self.queue), collections.deque()
        worker.terminate(grace=0.5)
        self.host.gpus.release(worker.worker_id)
        for future in doomed:
            self._finish(future, exception=exc)
        self.publish_function()

    def worker_ready(self, worker: Worker, seconds: float, at: float) -> None:
        with self.lock:
            worker.setup_seconds = seconds
            worker.setup_at = at
            if worker.state is WorkerState.RETIRING or self.state == "stopped":
                # Stopped or replaced while it ran `__setup__`: it is being terminated, and
                # marking the pool warm would make it replace the workers it just stopped.
                return
            worker.move_to(WorkerState.READY)
            self.state = "warm"
            self.last_error = None
            if self._assign():
                self._wake.notify()
        self.publish_function()

    def worker_exited(self, worker: Worker) -> None:
        """The worker's channel closed: blame its running job unless the exit was expected."""
        # (how it died is what the blamed job's error says: worth waiting for the backend to
        # learn it, which a busy machine or a container's teardown can make slow)
        reason = worker.exit_reason(wait=0.5 if worker.exit_expected else 15.0)
        # A direct call's caller may still be reading the reply connection, where a result the
        # worker wrote just before it died can wait: let it finish first (it reads to the end
        # of the connection, which the worker's death closed), so that result is not lost.
        lane = worker.lane.acquire(timeout=_LANE_WAIT)
        try:
            was_ready = self._settle_exit(worker, reason)
        finally:
            if lane:
                worker.lane.release()
        with self.lock:
            if self.state != "stopped" and not self._retiring and (was_ready or self.queue):
                # Stay warm: replace the worker now (restart_on_error, FatalException, crash).
                self._start_workers()
        self.publish_function()

    def _settle_exit(self, worker: Worker, reason: str) -> bool:
        """Fail the job the worker died running (if its exit was not expected), queue the
        others again, and let go of the worker. Returns whether it had been ready."""
        with self.lock:
            self.workers.pop(worker.worker_id, None)
            was_ready = worker.state in (WorkerState.READY, WorkerState.RETIRING)
            worker.move_to(WorkerState.EXITED)
            crashed, requeue = worker.jobs.settle_exit(blame_running=not worker.exit_expected)
            self.queue.extendleft(reversed(requeue))
            if not self.workers and self.state != "stopped":
                # (a stopped pool stays stopped: its last worker leaving must not revive it)
                self.state = "idle" if was_ready or self._retiring else self.state
            swaps = [key for key in self._swaps if key[0] == worker.worker_id]
            answers = [self._swaps.pop(key) for key in swaps]
        for answer in answers:
            answer.set_result("exited")
        worker.close_channels()
        self.host.gpus.release(worker.worker_id)
        if crashed is not None:
            self._finish(
                crashed,
                exception=WorkerCrashedError(
                    f"{self.spec.name}: worker {worker.worker_id} died while running job "
                    f"{crashed.job_id} ({reason}). The worker is replaced; other "
                    "queued jobs were not affected."
                ),
            )
        return was_ready

    # -- stopping, restarting, swapping ------------------------------------------------------

    def retire(self) -> None:
        """Stop taking jobs; finish what is queued and running, then stop the workers."""
        with self.lock:
            self._retiring = True
            # Replaced: an old handle's job would wait forever here (no worker is started for
            # a retiring pool), so it is refused at once instead.
            self._closed = True
            idle = not self.queue and not self._busy()
        if idle:
            self.stop()

    def close(self) -> None:
        """Stop for good (the registration is removed): no new jobs, the workers stopped, and
        the sender thread ends once they are gone."""
        with self.lock:
            self._closed = True
        self.stop()

    def stop(self, *, cancel_pending: bool = True) -> None:
        """Stop all workers now; queued and running jobs are cancelled."""
        with self.lock:
            self.state = "stopped"
            workers = list(self.workers.values())
            pending = list(self.queue) if cancel_pending else []
            self.queue.clear()
            for worker in workers:
                worker.retire()
                pending.extend(worker.jobs.take_all())
            self._wake.notify_all()
        for future in pending:
            future._mark_cancelled()
        for worker in workers:
            worker.terminate()
        self.publish_function()

    def restart(self) -> None:
        """Replace every worker with a fresh one (a new `__setup__`); queued jobs wait for it."""
        with self.lock:
            workers = list(self.workers.values())
            for worker in workers:
                worker.retire()
            if self.state == "stopped":
                self.state = "idle"
            self._retiring = False
        for worker in workers:
            worker.terminate()
        with self.lock:
            started = self._start_workers()
        if started:
            self.publish_function()

    def swap(self, record: FunctionRecord) -> dict[str, SwapOutcome]:
        """Give the live workers `record`'s code, keeping their `__setup__` state; wait for
        each one's answer (a worker takes it after the calls already sent to it). Calls queued
        from now on run the new code. Returns each worker's outcome by worker id."""
        with self.lock:
            self.record = record
            workers = [w for w in self.workers.values() if w.ready]
            waiting: dict[str, tuple[Worker, int, concurrent.futures.Future[Any]]] = {}
            for worker in workers:
                number = next(self._swap_ids)
                answer: concurrent.futures.Future[Any] = concurrent.futures.Future()
                self._swaps[(worker.worker_id, number)] = answer
                waiting[worker.worker_id] = (worker, number, answer)
        for worker, number, _ in waiting.values():
            try:
                worker.send_swap(number, record.payload, record.sources)
            except ChannelClosed:
                self.swap_answered(worker, number, "exited")
        return {worker_id: answer.result() for worker_id, (_, _, answer) in waiting.items()}

    def swap_answered(self, worker: Worker, number: int, outcome: SwapOutcome) -> None:
        with self.lock:
            answer = self._swaps.pop((worker.worker_id, number), None)
        if answer is not None:
            answer.set_result(outcome)
