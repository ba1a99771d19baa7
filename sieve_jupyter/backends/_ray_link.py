"""`RayLink`: the kernel's line to one worker actor (see `_ray_actor.py` for the other end).

Each call is one actor call (`call`, or `stream` for a generator function), whose outcome comes
back as the call's return value. A *consumer* thread per link waits for those in the order they
were sent — the order the actor runs them — so what it delivers is in order, and the first call
that fails because the actor died is the one it was running (or about to run). The side messages
of a long job arrive from the hub (the backend's puller thread hands them over); a job's outcome
says up to which number the hub holds them, and the consumer delivers it only after those. An
idle worker is pinged every few seconds, so one that dies idle (its node lost) is replaced
before a job is sent to it, and no job is blamed for it.

Cancel: `ray.cancel` for a call that has not started (Ray then never runs it), and a `Cancel` in
the worker's mailbox for one that runs (`ray.cancel` cannot interrupt a running actor call).

An actor that dies can take the answers of its last calls with it (Ray sends an answer after
the actor moved on). Then the worker's journal (`_ray_journal.py`), read by a task on its node,
says which job ran last and holds the outcomes the kernel had not confirmed: the calls before
that job finished (their kept outcomes are delivered; one too large to keep fails saying its
result was lost, and is never run again), it is the one to blame if it was still running, and
the calls after it never started (the pool runs them on the replacement). When its node is gone
too, the worker's *grant* in the cluster's key-value store (`_ray_grants.py`) bounds what it
may have begun: each call is numbered, and one sent behind another starts only once a grant
covers its number. The first call without an answer is taken for the running one if it may
have begun; the calls behind it that the grant covers fail, saying they may have begun (an
actor whose node is lost runs on for a moment), and the rest run on the replacement: none is
run twice.
"""

from __future__ import annotations

import collections
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cloudpickle
import ray
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sieve_jupyter._errors import BackendError, PythonVersionMismatchError, WorkerCrashedError
from sieve_jupyter.backends._base import (
    CallBatch,
    LinkLaunch,
    LinkReceiver,
    Unsendable,
    WorkerLink,
)
from sieve_jupyter.backends._ray_journal import read_journal
from sieve_jupyter.backends._ray_wire import (
    SideMessageOrder,
    call_failed,
    dumps_all,
    dumps_small,
    loads,
)
from sieve_jupyter.runtime import _files
from sieve_jupyter.runtime._tracebacks import error_info
from sieve_jupyter.runtime.messages import (
    Cancel,
    Cancelled,
    Error,
    Load,
    Message,
    Output,
    Reply,
    Result,
    SetupFailed,
    Shutdown,
    Skipped,
    SwapFailed,
    pack,
    unpack,
)
from sieve_jupyter.runtime.protocol import ChannelClosed

if TYPE_CHECKING:
    from sieve_jupyter.backends.ray import RayBackend

__all__ = ["RayLink", "describe_actor_death"]

#: seconds an idle worker goes without a ping
_PING_EVERY = 2.0
#: seconds to wait for side messages the hub acknowledged but has not passed on yet (bounds a
#: hub lost in between; they then are missing from the job's logs)
_SIDE_WAIT = 30.0
#: seconds a stopped worker has to leave on its own before it is killed
_STOP_GRACE = 2.0
#: seconds to wait for a dead worker's journal
_JOURNAL_WAIT = 60.0

#: most calls sent to an actor as one (`RayLink.send_calls`)
_GROUP = 64

_ActorGone = (ray.exceptions.RayActorError,)
#: seconds `_get` waits at a time (between two, the caller's interrupts are raised)
_WAIT_SLICE = 1.0
#: the messages that settle a job
_OUTCOMES = (Result, Error, Skipped, Cancelled)


class _Sent:
    """A call (or load, swap, ping) sent to the actor, awaiting its answer in order."""

    __slots__ = ("behind", "claimed", "index", "job", "kind", "number", "ref")

    def __init__(
        self,
        kind: str,
        job: Any,
        ref: Any,
        claimed: bool = False,
        index: int | None = None,
        number: int = 0,
        behind: bool = False,
    ) -> None:
        self.kind = kind  # "load", "call", "stream", "swap", "ping"
        self.job = job  # the job id (call, stream), the swap number, or None
        self.ref = ref
        #: the thread that sent it reads its answer (`settle_here`): the consumer waits
        self.claimed = claimed
        #: its place in a group of calls sent as one (`send_calls`), answered together
        self.index = index
        #: a call's number, and whether it was sent behind another (it then starts only once
        #: the worker was granted its number: `_ray_grants.py`)
        self.number = number
        self.behind = behind


class RayLink(WorkerLink):
    """One worker actor, as its pool sees it through a `LinkedWorker`."""

    def __init__(
        self,
        backend: RayBackend,
        actor: Any,
        launch: LinkLaunch,
        receiver: LinkReceiver,
        post: Callable[[str, Any], None],
    ) -> None:
        self._backend = backend
        self._actor = actor
        self._launch = launch
        self._receiver = receiver
        self._post = post
        self._worker_id = launch.worker_id
        self._streaming = launch.spec.is_generator
        #: a burst goes in groups of calls (`send_calls`): not for a generator function, nor
        #: once a group brought a large result back
        self._grouping = not self._streaming
        self._gpu = launch.spec.gpu is not None and not launch.spec.gpu.is_cpu
        self._hello = actor.hello.remote()
        self._info: dict[str, Any] = {}
        #: the actor does not see the kernel's files (another machine, a container): Files
        #: sent to it take their content (`_files.carrying_content`), and so do its answers
        self._carry_files = False
        #: contents (SHA-256) sent to the actor, and those it holds: a call that ran unpickled
        #: them into its store, so a File with one of them goes as a reference to it, not its
        #: content again (bounded: the actor is told to drop the least recently used)
        self._contents = _files.PeerContents()
        #: the contents each call not answered yet carries (held once it has run)
        self._carried: dict[str, list[str]] = {}
        #: what each call not answered yet tells the actor to drop (again if it never ran)
        self._forgets: dict[str, _files.Forget] = {}
        #: held from a call's pickling to its sending: the actor unpickles calls in the order
        #: they were pickled, so a `Forget` comes after every call that still refers to them
        self._send_lock = threading.RLock()
        self._sent: collections.deque[_Sent] = collections.deque()
        #: jobs of a group not answered yet whose outcomes came through the hub
        self._settled: set[str] = set()
        #: the number of the last call sent (under `_send_lock`)
        self._numbered = 0
        self._news = threading.Condition()
        #: refs of the calls not answered yet, by job id (for `ray.cancel`)
        self._refs: dict[str, Any] = {}
        #: side messages, delivered in the worker's order; and the lock of every delivery
        self._order = SideMessageOrder()
        self._deliver = threading.Condition()
        self._terminated = False
        #: the actor died: nothing more is sent to it
        self._dying = False
        self._closed = False
        self._consumer: threading.Thread | None = None
        #: jobs whose outcomes arrived since the last call was sent (the worker then drops
        #: them from its journal)
        self._received: list[str] = []
        self._received_lock = threading.Lock()

    # -- WorkerLink --------------------------------------------------------------------------

    @property
    def description(self) -> str:
        info = self._info
        if not info:
            return "actor starting"
        return f"actor {info['actor_id'][:8]} on {info['node_ip']}"

    @property
    def pid(self) -> int | None:
        pid: int | None = self._info.get("pid")
        return pid

    def details(self) -> dict[str, Any]:
        info = self._info
        if not info:
            return {}
        return {"node": info["node_ip"], "node_id": info["node_id"], "actor_id": info["actor_id"]}

    def wait_started(self) -> None:
        waited = 0.0
        timeout = self._launch.start_timeout
        while True:
            ready, _ = ray.wait([self._hello], timeout=timeout)
            if ready:
                break
            if self._terminated:
                raise BackendError(f"worker {self._worker_id} was stopped while starting")
            waited += timeout
            self._receiver.log(
                "stderr",
                f"worker {self._worker_id}: still waiting for the Ray cluster to place it "
                f"({waited:.0f} s): {self._backend.describe_request(self._launch.spec)}\n",
            )
        try:
            info: dict[str, Any] = ray.get(self._hello)
        except Exception as exc:  # noqa: BLE001 - the actor could not start
            if self._terminated:
                raise BackendError(f"worker {self._worker_id} was stopped while starting") from exc
            raise BackendError(
                f"worker {self._worker_id}: the Ray actor could not start: {_short(exc)}"
            ) from exc
        python = tuple(info["python"][:2])
        if python != sys.version_info[:2]:
            self.terminate()
            raise PythonVersionMismatchError(
                f"worker {self._worker_id} runs Python {python[0]}.{python[1]} on the Ray "
                f"cluster but the kernel runs {sys.version_info[0]}.{sys.version_info[1]}; "
                "code travels by value (cloudpickle), which needs the same minor version. Fix: "
                "run the kernel with the cluster's Python version (or a cluster image with "
                "the kernel's)."
            )
        self._info = info
        self._carry_files = info["files"] != _files.filesystem_id()
        self._backend.started(info["node_ip"], info["pid"])

    def load(self, load: Load) -> None:
        options = {**load.options, "files_by_content": self._carry_files}
        ref = self._actor.load.remote(load.payload, options, dict(self._launch.env), self._gpu)
        self._enqueue(_Sent("load", None, ref))
        self._consumer = threading.Thread(
            target=self._consume, name=f"sieve-consume-{self._worker_id}", daemon=True
        )
        self._consumer.start()

    def send_call(
        self, job: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, waited: bool = False
    ) -> None:
        self._check_open()
        with self._send_lock:
            self._send_request(job, self._request(job, args, kwargs), waited=waited)

    def send_calls(
        self, calls: CallBatch, unsendable: Unsendable, *, waited: str | None = None
    ) -> None:
        """A burst of calls goes as few actor calls (`SieveWorker.calls`, up to `_GROUP`
        jobs each): Ray's cost per call, on both sides, is most of a small job's. The jobs'
        outcomes come as side messages, in order: with the group's answer, or through the hub
        while a long job of the group runs (so it shows as running, the outcomes before it
        arrive, and it can be cancelled). Only plain calls whose request is bytes are
        grouped; a waited one, a generator's and one with a large buffer (left to Ray) go
        alone, in their place. A cancel reaches a grouped job through the mailbox
        (`ray.cancel` would stop the whole group)."""
        self._check_open()
        with self._send_lock:
            self._send_calls(calls, unsendable, waited)

    def _send_calls(self, calls: CallBatch, unsendable: Unsendable, waited: str | None) -> None:
        group: list[tuple[str, bytes]] = []
        for job, args, kwargs in calls:
            try:
                request = self._request(job, args, kwargs)
            except Exception as exc:  # noqa: BLE001 - its arguments cannot be sent
                unsendable(job, exc)
                continue
            if not self._grouping or job == waited or type(request) is not bytes:
                self._send_group(group)
                group = []
                self._send_request(job, request, waited=job == waited)
                continue
            group.append((job, request))
            if len(group) == _GROUP:
                self._send_group(group)
                group = []
        self._send_group(group)

    def _check_open(self) -> None:
        if self._terminated or self._dying or self._closed:
            raise ChannelClosed(f"worker {self._worker_id} is gone")

    def _request(self, job: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A call's one argument to the actor, as bytes when it can be (see _ray_wire.py),
        with the contents the actor may drop (before the arguments: see `_files.Forget`) and
        the jobs whose outcomes arrived since the previous call (for the journal)."""
        with self._received_lock:
            received, self._received = self._received, []
        forget = self._contents.take_forget() if self._carry_files else None
        request = (job, forget, args, kwargs, received)
        outgoing = self._contents.outgoing() if self._carry_files else None
        try:
            with _files.carrying_content(self._carry_files, outgoing):
                data = dumps_small(request)
        except BaseException:
            with self._received_lock:  # (not sent: the next call carries them)
                self._received[:0] = received
            if forget is not None:
                self._contents.forget_again(forget)
            raise
        if outgoing is not None:
            self._sent_with(job, outgoing)
        if forget is not None:
            self._forgets[job] = forget
        return data or request

    def _sent_with(self, job: str, outgoing: _files.Outgoing) -> None:
        self._contents.sent(outgoing)
        if outgoing.carried:
            self._carried[job] = list(outgoing.carried)

    def _send_group(self, group: list[tuple[str, bytes]]) -> None:
        if len(group) == 1:
            self._send_request(*group[0])
        elif group:
            first = self._numbered + 1
            self._numbered += len(group)
            behind = bool(self._sent)  # (see `_send_request`)
            ref = self._actor.calls.remote(group, first, behind)
            with self._news:
                for index, (job, _) in enumerate(group):
                    self._sent.append(
                        _Sent(
                            "call",
                            job,
                            ref,
                            index=index,
                            number=first + index,
                            behind=behind or index > 0,
                        )
                    )
                if len(self._sent) == len(group):
                    self._news.notify()

    def _send_request(self, job: str, request: Any, *, waited: bool = False) -> None:
        # (a request that is not bytes holds a large buffer: Ray pickles it, here and now,
        # carrying what `_request` carried, and referring to what the actor holds)
        carry = self._carry_files and type(request) is not bytes
        outgoing = self._contents.outgoing() if carry else None
        self._numbered += 1
        number = self._numbered
        # Behind another call: the worker starts it only once granted (`_ray_grants.py`). (A
        # ping or swap enqueued meanwhile by another thread leaves one unmarked behind it:
        # taken as begun, as is every unmarked call.)
        behind = bool(self._sent)
        grant = (number,) if behind else ()  # (an argument less for Ray to carry)
        with _files.carrying_content(carry, outgoing):
            if self._streaming and self._backend.client_mode:
                # (Ray Client cannot iterate a streaming generator: the items come by the hub)
                kind, ref = "call", self._actor.stream_by_hub.remote(request, *grant)
            elif self._streaming:
                kind, ref = "stream", self._actor.stream.remote(request, *grant)
            else:
                kind, ref = "call", self._actor.call.remote(request, *grant)
        claimed = waited and not self._streaming
        sent = _Sent(kind, job, ref, claimed=claimed, number=number, behind=behind)
        if outgoing is not None:
            self._sent_with(job, outgoing)
        self._refs[job] = sent.ref
        self._enqueue(sent)

    def settle_here(self, job: str, *, wait: bool = True) -> None:
        """Wait for a claimed call's answer on the calling thread and deliver it here (the
        consumer leaves a claimed call alone). Anything but an answer — the actor gone, the
        call cancelled, an interrupt — gives the call back to the consumer, which reads the
        same answer from Ray and handles it as usual; so does `wait=False`."""
        with self._news:
            sent = next((s for s in self._sent if s.job == job and s.claimed), None)
            if sent is None:
                return
            try:
                # (a ping or a swap may still be answered first: the consumer says when)
                while wait and self._sent[0] is not sent and not self._terminated:
                    self._news.wait()
            finally:
                if not wait or self._sent[0] is not sent:
                    sent.claimed = False
                    self._news.notify_all()
            if not sent.claimed:
                return
        try:
            outcome = _get(sent.ref)
        except BaseException as exc:
            with self._news:
                sent.claimed = False
                self._news.notify_all()
            if not isinstance(exc, Exception):
                raise  # (an interrupt: the caller cancels the job)
            return
        self._ran(sent)
        self._answered(sent, outcome)

    def cancel(self, job: str) -> None:
        ref = self._refs.get(job)
        if ref is not None:
            try:
                ray.cancel(ref)  # (never runs if it has not started)
            except Exception:  # noqa: BLE001, S110 - already done, or the actor is gone
                pass
        self._to_mailbox(Cancel(job))  # (interrupted if it runs)

    def reply(self, request: int, ok: bool, value: Any) -> None:
        self._to_mailbox(Reply(request, ok, value))

    def _to_mailbox(self, message: Message) -> None:
        """Leave `message` in the worker's mailbox at the hub, as bytes (see _ray_wire.py).

        Raises:
            Exception: `message` cannot be pickled (a reply's value), before anything is sent.
        """
        outgoing = _files.Outgoing(limit=0) if self._carry_files else None
        with _files.carrying_content(self._carry_files, outgoing):
            data = dumps_all(pack(message))
        if outgoing is not None:
            self._contents.sent(outgoing)  # (the actor keeps them: forgotten in their turn)
        self._post(self._worker_id, data)

    def swap(self, swap: int, payload: bytes, sources: dict[str, list[str]]) -> None:
        if self._terminated or self._dying or self._closed:
            raise ChannelClosed(f"worker {self._worker_id} is gone")
        self._enqueue(_Sent("swap", swap, self._actor.swap.remote(swap, payload, sources)))

    def terminate(self) -> None:
        with self._news:
            if self._terminated:
                return
            self._terminated = True
            self._news.notify_all()
        if self._closed:
            return  # (already gone)
        if not self._info:  # still being placed: nothing to tidy up in it
            self.kill()
            return
        # Asked to leave, it removes its journal and exits at once, even mid-job (the hub's
        # mailbox is read by a thread of its own); killed if it has not after a grace period.
        self._to_mailbox(Shutdown())
        timer = threading.Timer(_STOP_GRACE, self.kill)
        timer.daemon = True
        timer.start()

    def kill(self) -> None:
        """End the actor now (it may be gone already)."""
        with self._news:
            self._terminated = True
            self._news.notify_all()
        if not self._backend.alive():
            return
        try:
            ray.kill(self._actor, no_restart=True)
        except Exception:  # noqa: BLE001, S110 - already gone, or Ray is shut down
            pass

    def join(self, timeout: float) -> None:
        """Wait for the consumer thread to end (the backend closes)."""
        consumer = self._consumer
        if consumer is not None:
            consumer.join(timeout)

    # -- side messages from the hub (the backend's puller thread) ----------------------------

    def side_messages(self, numbered: list[tuple[int, Any]]) -> None:
        """Side messages the worker shipped through the hub, numbered (`SieveWorker._ship`)."""
        with self._deliver:
            if self._closed:
                return
            messages = [unpack(packed) for packed in self._order.take(numbered)]
            if messages:
                self._receiver.receive(messages)
                self._settled.update(m.job for m in messages if isinstance(m, _OUTCOMES))
            self._deliver.notify_all()
        if _restarting(messages):  # (an outcome of a group's job: `SieveWorker.calls`)
            self.terminate()

    # -- the consumer thread -----------------------------------------------------------------

    def _enqueue(self, sent: _Sent) -> None:
        with self._news:
            self._sent.append(sent)
            # (a claimed call is not the consumer's to read: waking it would only cost time)
            if len(self._sent) == 1 and not sent.claimed:
                self._news.notify()

    def _next(self) -> _Sent | None:
        """The oldest call not answered yet; pings the worker while there is none. None: the
        link was terminated with nothing in flight."""
        with self._news:
            while True:
                if self._sent:
                    if not self._sent[0].claimed:
                        return self._sent[0]
                    # Its caller reads the answer, or gives it back, and says so (the
                    # timeout only bounds a notice missed).
                    self._news.wait(_PING_EVERY)
                    continue
                if self._terminated or not self._backend.alive():
                    return None
                if not self._news.wait(_PING_EVERY) and not self._sent and not self._terminated:
                    with self._backend.lock:
                        if self._backend.alive():
                            self._sent.append(_Sent("ping", None, self._actor.ping.remote()))

    def _consume(self) -> None:
        while True:
            sent = self._next()
            if sent is None:
                self._close("stopped", blame_running=False)
                return
            try:
                outcome = self._read_stream(sent) if sent.kind == "stream" else _get(sent.ref)
            except _ActorGone as exc:
                self._actor_gone(sent, exc)
                return
            except ray.exceptions.TaskCancelledError:
                self._not_run(sent)
                outcome = (pack(Skipped(sent.job)), 0, []) if sent.job is not None else None
            except Exception as exc:  # noqa: BLE001 - the call itself failed in Ray
                self._not_run(sent)
                outcome = self._failed_in_ray(sent, exc)  # (each of a group's jobs in turn)
            else:
                self._ran(sent)
                if sent.index is not None:
                    self._answered_group(sent, outcome)
                    continue
            self._answered(sent, outcome)

    def _ran(self, sent: _Sent) -> None:
        """`sent` was answered by the worker: its request was unpickled there, so the contents
        it carried are in the worker's store now (a call Ray cancelled or could not run was
        never unpickled: its contents are sent again). Not said of a group's jobs, one of which
        may have failed to unpickle: they carry small contents only, sent again each time."""
        if sent.job is None:
            return
        self._forgets.pop(sent.job, None)
        carried = self._carried.pop(sent.job, None)
        if carried and sent.index is None:
            self._contents.confirm(carried)

    def _not_run(self, sent: _Sent) -> None:
        """`sent` failed in Ray (cancelled before it started, say): what it told the actor to
        drop goes with the next call (dropping twice does no harm)."""
        forget = self._forgets.pop(sent.job, None) if sent.job is not None else None
        if forget is not None:
            self._contents.forget_again(forget)

    def _answered_group(self, first: _Sent, outcome: Any) -> None:
        """The group `first` leads was answered: its jobs' outcomes came as side messages,
        through the hub or in the answer's tail (`SieveWorker.calls`); deliver those not
        delivered yet, in order."""
        with self._news:
            members = []
            while self._sent and self._sent[0].ref is first.ref:
                members.append(self._sent.popleft())
                self._carried.pop(members[-1].job or "", None)
                self._forgets.pop(members[-1].job or "", None)
            if self._sent and self._sent[0].claimed:
                self._news.notify_all()  # (its caller waits for it to come first)
        with self._received_lock:
            self._received.extend(sent.job for sent in members)
        try:
            self._deliver_group(members, outcome)
        finally:
            # (after the delivery, which waits for what the hub held of the group)
            self._settled.difference_update(sent.job for sent in members)

    def _deliver_group(self, members: list[_Sent], outcome: Any) -> None:
        try:
            large, acked, tail = loads(outcome)
        except Exception as exc:  # noqa: BLE001 - e.g. a type the kernel cannot import
            self._unreadable([sent.job for sent in members if sent.job is not None], exc)
            return
        if large:
            self._grouping = False  # (its results are large: each call brings its own back)
        if self._deliver_outcome(None, acked, tail):
            self.terminate()

    def _answered(self, sent: _Sent, outcome: Any) -> None:
        """`sent` (the oldest in flight) was answered: deliver its outcome (the consumer's
        thread, or the thread that claimed it)."""
        with self._news:
            self._sent.popleft()
            if self._sent and self._sent[0].claimed:
                self._news.notify_all()  # (its caller waits for it to come first)
        if sent.kind in ("call", "stream"):
            self._refs.pop(sent.job, None)
            self._carried.pop(sent.job, None)
            self._forgets.pop(sent.job, None)
            with self._received_lock:
                self._received.append(sent.job)
        if sent.kind == "ping" or outcome is None:
            return
        try:
            packed, acked, tail = loads(outcome)
        except Exception as exc:  # noqa: BLE001 - e.g. a type the kernel cannot import
            if sent.job is None or sent.kind not in ("call", "stream"):
                raise
            self._unreadable([sent.job], exc)
            return
        # (a call's outcome that Ray rebuilt itself holds a large buffer, which may live in
        # its object store for as long as the result does: the job history must not keep it
        # there; a stream's outcome is never bytes, and holds no result)
        held = sent.kind == "call" and type(outcome) is not bytes
        if self._deliver_outcome(packed, acked, tail, held=held):
            # The worker said it restarts (restart_on_error, FatalException): a Ray actor
            # cannot end itself after answering, so the kernel ends it.
            self.terminate()
        if sent.claimed:
            # (after the delivery, so as not to compete with it: the consumer, which waited
            # for this call, reads the calls sent behind it, or pings an idle worker again)
            with self._news:
                self._news.notify_all()

    def _read_stream(self, sent: _Sent) -> Any:
        """Deliver the outputs of a generator job as they come; returns its outcome."""
        for item_ref in sent.ref:
            item = _get(item_ref)
            if item[0] == "output":
                with self._deliver:
                    if not self._closed:
                        self._receiver.receive([Output(sent.job, item[1])])
            else:
                return item[1:]
        raise BackendError(f"job {sent.job}: the worker's stream ended without an outcome")

    def _deliver_outcome(
        self, packed: Any, acked: int, tail: list[tuple[int, Any]], *, held: bool = False
    ) -> bool:
        """Deliver a job's side messages, then its outcome; returns whether the worker said
        it restarts. `held`: a result in the outcome holds memory Ray keeps for it."""
        with self._deliver:
            deadline = time.monotonic() + _SIDE_WAIT
            while self._order.delivered < acked and time.monotonic() < deadline:
                self._deliver.wait(deadline - time.monotonic())
            if self._closed:
                return False
            messages = [unpack(p) for p in self._order.take(tail, lost_up_to=acked)]
            kept: tuple[str, ...] = ()
            if packed is not None:
                outcome = unpack(packed)
                messages.append(outcome)
                if held and isinstance(outcome, Result):
                    kept = (outcome.job,)
            self._receiver.receive(messages, kept)
        return _restarting(messages)

    def _failed_in_ray(self, sent: _Sent, exc: Exception) -> Any:
        """A call Ray could not run (its arguments could not be rebuilt in the worker, say):
        its job fails with the reason; the worker carries on."""
        cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) else exc
        if sent.kind in ("call", "stream"):
            return pack(Error(sent.job, error_info(call_failed(sent.job, cause)), False)), 0, []
        if sent.kind == "swap":
            return pack(SwapFailed(sent.job, error_info(cause))), 0, []
        if sent.kind == "load":
            return pack(SetupFailed(error_info(cause))), 0, []
        return None

    def _actor_gone(self, sent: _Sent, exc: BaseException) -> None:
        self._dying = True
        reason = describe_actor_death(exc, self._info)
        if self._terminated:
            self._close("stopped", blame_running=False)
            return
        if sent.kind == "load":
            # Died while loading or in `__setup__` (out of memory while loading weights, a
            # crash in a native library): the jobs waiting for it learn why, rather than
            # waiting for one replacement after another.
            error = WorkerCrashedError(
                f"worker {self._worker_id} died while loading its code or running "
                f"__setup__ ({reason})."
            )
            with self._deliver:
                if not self._closed:
                    self._receiver.receive([SetupFailed(error_info(error))])
            self._close(reason, blame_running=False)
            return
        # (a group's jobs whose outcomes came through the hub are settled: not in doubt)
        with self._deliver:
            calls = [
                s for s in self._sent if s.kind in ("call", "stream") and s.job not in self._settled
            ]
        if not calls:
            # A ping or a swap was first in line, and no call behind it: no job was running.
            self._close(reason, blame_running=False)
            return
        record = self._read_journal()
        if record is None:
            blame = self._node_lost(calls, reason)
        else:
            blame = self._journal_says(record, [s.job for s in calls], reason)
        self._close(reason, blame_running=blame)

    def _journal_says(
        self, record: tuple[str, str, dict[str, bytes], int], unanswered: list[str], reason: str
    ) -> bool:
        """The dead worker's journal was read: deliver the outcomes it kept, fail the jobs
        that finished with their results lost. Returns whether the first call without an
        answer was running (the calls after the last it started never began)."""
        state, last, kept, shipped = record
        self._deliver_shipped(shipped)
        # Everything before the last job it started finished; so did that one if the
        # journal says so. Their answers were lost with the actor, but kept on its node.
        done = state == "F" or last in kept
        if last in unanswered:
            finished = unanswered[: unanswered.index(last) + done]
            blame = not done
        else:
            finished = []
            blame = False  # the last job it ran was answered: it died between jobs
        for job in unanswered:  # (in order; a skipped job has no record of its own)
            if job in kept:
                self._deliver_outcome(*cloudpickle.loads(kept[job]))
        self._results_lost([job for job in finished if job not in kept], reason)
        return blame

    def _node_lost(self, calls: list[_Sent], reason: str) -> bool:
        """The dead worker's node is gone, and its journal with it: the worker's grant says
        which calls it may have begun (`_ray_grants.py`). The first call without an answer
        was running (or finished, its answer lost) if it may have begun; those sent behind
        it that the grant covers fail rather than risk running twice (a lost node's actor
        can run on for a moment, and its answers can be lost); the rest never began and run
        on the replacement. Returns whether the first was running."""
        granted = self._granted()
        begun = [i for i, s in enumerate(calls) if not s.behind or s.number <= granted]
        if not begun:
            return False  # it died between calls: all of them run on the replacement
        jobs = [s.job for s in calls[: begun[-1] + 1]]
        self._maybe_begun(jobs[0], jobs[1:], reason)
        return True

    def _granted(self) -> int:
        """The highest call number the worker was granted; every number when its grants
        are not recorded or cannot be read (all its calls are then taken as begun)."""
        if not self._info.get("grants"):
            return sys.maxsize
        try:
            return self._backend.granted(self._worker_id)
        except Exception:  # noqa: BLE001 - the store cannot be read
            return sys.maxsize

    def _deliver_shipped(self, shipped: int) -> None:
        """The actor died: wait until the side messages the hub held for it (up to
        `shipped`) have come, then deliver all that came, in order. Outcomes shipped through
        the hub (a large one, before the next job started) settle their jobs, which the
        death then does not concern; what was only in the answers the actor took with it is
        skipped. (Waiting for the highest number to come, rather than to be delivered, is
        enough: the hub hands a worker's messages on in the order they were posted, so a gap
        below it can only be such an answer's.)"""
        with self._deliver:
            deadline = time.monotonic() + _SIDE_WAIT
            while self._order.received < shipped and time.monotonic() < deadline:
                self._deliver.wait(deadline - time.monotonic())
            if self._closed:
                return
            messages = [unpack(p) for p in self._order.take([], self._order.received)]
            if messages:
                self._receiver.receive(messages)

    def _read_journal(self) -> tuple[str, str, dict[str, bytes], int] | None:
        """The dead worker's journal (its last record and the outcomes it kept), read by a
        task on its node; None when the node is gone too, or the task cannot run there."""
        node_id = self._info.get("node_id")
        path = self._info.get("journal")
        if not node_id or not path or not self._backend.alive():
            return None
        try:
            alive = any(
                node.get("NodeID") == node_id and node.get("Alive")
                for node in ray.nodes()  # type: ignore[no-untyped-call]
            )
            if not alive:
                return None
            task = ray.remote(read_journal).options(
                num_cpus=0,
                max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            )
            ref = task.remote(path)
            try:
                record: tuple[str, str, dict[str, bytes], int] | None = ray.get(
                    ref, timeout=_JOURNAL_WAIT
                )
            except ray.exceptions.GetTimeoutError:
                ray.cancel(ref, force=True)
                return None
            return record
        except Exception:  # noqa: BLE001 - the node went away meanwhile
            return None

    def _unreadable(self, jobs: list[str], exc: Exception) -> None:
        """An answer that cannot be rebuilt here (it holds a type the kernel cannot import: a
        module only the cluster has): its jobs fail saying so. What else travelled with it
        (side messages) is lost, so the worker is given up as if it had died: the calls sent
        behind fail as when a node is lost (they may have begun; none runs twice), and the
        pool starts a fresh worker. (Left to the consumer, the error stopped it: the calls
        waited forever.)"""
        self._dying = True
        why = f"{type(exc).__name__}: {exc}"
        self._fail(
            {
                job: f"job {job}: its answer cannot be rebuilt in the kernel ({why}). Fix: "
                "return values whose types the kernel can import (plain data, numpy arrays, "
                "sieve.File, or types defined in the notebook)."
                for job in jobs
            },
            TypeError,
        )
        with self._news:
            behind = [s.job for s in self._sent if s.kind in ("call", "stream") and s.job]
        reason = f"an answer it sent cannot be read in the kernel ({why})"
        if behind and jobs:
            self._maybe_begun(jobs[-1], behind, reason)
        self.terminate()
        self._close(reason, blame_running=False)

    def _results_lost(self, jobs: list[str], reason: str) -> None:
        self._fail(
            {
                job: f"job {job} finished in worker {self._worker_id}, but its result was lost: "
                f"the worker died right after ({reason}). It was not run again."
                for job in jobs
            }
        )

    def _maybe_begun(self, running: str, behind: list[str], reason: str) -> None:
        self._fail(
            {
                job: f"job {job} was sent to worker {self._worker_id} behind job {running}, and "
                f"the worker died ({reason}) before saying whether it had begun it. It was not run "
                "again, so that it cannot run twice: push it again if that is safe."
                for job in behind
            }
        )

    def _fail(self, texts: dict[str, str], error: type[Exception] = WorkerCrashedError) -> None:
        """Fail each job with an `error` (a `WorkerCrashedError` unless told) saying its text."""
        messages: list[Message] = [
            Error(job, error_info(error(text)), False) for job, text in texts.items()
        ]
        if messages:
            with self._deliver:
                if not self._closed:
                    self._receiver.receive(messages)

    def _close(self, reason: str, *, blame_running: bool) -> None:
        with self._deliver:
            if self._closed:
                return
            self._closed = True
            self._deliver.notify_all()
        self._backend.forget(self._worker_id)
        self._receiver.link_closed(reason, blame_running=blame_running)


def _get(ref: Any) -> Any:
    """`ray.get(ref)`, once `ray.wait` says it is ready. A blocking `ray.get` of an object
    held on another node, made while another thread of this process sends calls carrying
    large arguments, can miss its arrival and stall about a second (measured: 100 calls of
    1 MiB there and back, 120-250 ms per call instead of 8-12, with or without this package);
    `ray.wait` sees it arrive."""
    while not ray.wait([ref], timeout=_WAIT_SLICE)[0]:
        pass
    return ray.get(ref)


def _restarting(messages: list[Message]) -> bool:
    """Whether the worker said it restarts (restart_on_error, FatalException)."""
    return any(type(message) is Error and message.restarting for message in messages)


def describe_actor_death(exc: BaseException, info: dict[str, Any]) -> str:
    """Why an actor died, in a line, from Ray's error (Ray knows a process died, not its exit
    status: a kill, the out-of-memory killer and a segfault read the same)."""
    text = " ".join(
        line.strip() for line in str(getattr(exc, "error_msg", None) or exc).splitlines()
    )
    match = re.search(r"The actor is dead because (.*?)(?: Some common causes include|$)", text)
    cause = match.group(1).strip() if match else text.split(". ", 1)[0] or type(exc).__name__
    where = f" on {info['node_ip']}" if info.get("node_ip") else ""
    hint = ""
    if "worker process has died" in cause and "exit type: INTENDED" not in cause:
        hint = " (killed from outside, out of memory, or a crash: a segfault, os._exit)"
    return f"the Ray actor{where} died: {cause}{hint}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if len(text) < 2000 else text[:2000] + " ..."
