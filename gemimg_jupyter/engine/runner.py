"""The coordinator: :class:`JobRunner` starts, finds, cancels, waits for and shuts down jobs.

It asks the ledger who pays (:mod:`.claims`), then runs each job as a state
machine on the lanes (:mod:`.lanes`): follow another process's row
(:mod:`.claims`), submit (:mod:`.submit`), poll, download and write
(:mod:`.collect`), under the shared limits (:mod:`.limits`).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gemimg_jupyter.domain.errors import ConfigError, GemimgError, JobCancelled, JobError
from gemimg_jupyter.domain.models import GenerationParams, JobState
from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.engine import claims
from gemimg_jupyter.engine.cadence import PollSchedule
from gemimg_jupyter.engine.collect import Collector
from gemimg_jupyter.engine.handle import Job, JobOwner, Listener
from gemimg_jupyter.engine.lanes import Lanes, Stopped
from gemimg_jupyter.engine.limits import Line, RateGate, Reservations, Window, submit_turns
from gemimg_jupyter.engine.record import JobRecord, Steps
from gemimg_jupyter.engine.shared import Engine, check_cancel, final_state
from gemimg_jupyter.engine.submit import Submitter
from gemimg_jupyter.engine.transitions import LeaseLost, Transitions
from gemimg_jupyter.gateway.client import ToAPIsClient
from gemimg_jupyter.ledger.store import LedgerRow, Store

log = logging.getLogger(__name__)


class JobRunner:
    """Runs jobs as state machines: one scheduler thread, a small I/O pool, shared limits.

    Each job is a generator that yields how long to wait before its next step
    (``None``: until woken); the lanes (:class:`~.lanes.Lanes`) step it.
    Unfinished tasks are limited by an adaptive window (:class:`~.limits.Window`).

    Parameters
    ----------
    client : ToAPIsClient
        The gateway client.
    store : Store
        Ledger and image files.
    settings : Settings
        In-flight cap, rates, polling cadence, deadline.
    backend : str
        ``"sim"`` or ``"toapis"``: recorded in the ledger and provenance.
    gate : RateGate, optional
        The session's rate gate, shared with the client (built here when not given).
    owner : JobOwner, optional
        The session every job of this runner belongs to (for ``Job.edit``, ``pick``, ``lineage``).
    """

    def __init__(
        self,
        client: ToAPIsClient,
        store: Store,
        settings: Settings,
        *,
        backend: str,
        gate: RateGate | None = None,
        owner: JobOwner | None = None,
        typical: tuple[float, float] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.backend = backend
        self.gate = gate or RateGate(settings)
        if client.gate is not self.gate:
            client.gate = self.gate
        rng = random.Random()
        # until this session has seen tasks end, the ledger's past durations of the same model and resolution
        # place the first looks (or, none there, the backend's typical task time)
        # and where the progress of finished tasks of that kind ended (so its extrapolation aims right)
        self.polls = PollSchedule(
            settings,
            rng,
            prior=lambda model, res: store.durations(backend, model, res),
            typical=typical,
            ends=lambda model, res: store.progress_end(backend, model, res),
            keep_end=lambda model, res, low, high: store.keep_progress_end(backend, model, res, low, high),
        )
        lanes = Lanes(settings, abort=lambda rec, exc: self._record.abort(rec, exc))
        window = Window(settings, wake=lambda rec: lanes.schedule(rec, 0.0))
        turns = submit_turns(settings)
        budget = Reservations()
        self._record = Transitions(store, window, budget)
        self._engine = Engine(
            client=client,
            store=store,
            settings=settings,
            backend=backend,
            gate=self.gate,
            rng=rng,
            polls=self.polls,
            window=window,
            turns=Line(lambda: turns, wake=lambda rec: lanes.schedule(rec, 0.0)),
            budget=budget,
            lanes=lanes,
            record=self._record,
        )
        self._submitter = Submitter(self._engine)
        self._collector = Collector(self._engine)
        self._jobs: dict[str, JobRecord] = {}  # by short id
        #: a job each time a request was shared with one already running (paid once, the other asks saved)
        self.shared: list[Job] = []
        self._lock = threading.Lock()
        # one claim at a time: a sweep claiming in the background and a re-run of it (or any submit) see each
        # other's jobs as running, so the same request is shared, never paid twice
        self._claiming = threading.RLock()
        store.start_heartbeat()
        #: the session every new job belongs to (for ``Job.edit``, ``pick``, ``lineage``)
        self.owner = owner

    @property
    def settings(self) -> Settings:
        """In-flight cap, rates, polling cadence, deadline (a new value applies to the jobs' next steps)."""
        return self._engine.settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._engine.settings = settings

    def carry_spending(self, usd: float) -> None:
        """Count ``usd`` spent by a session this one replaced against ``max_cost_usd``."""
        self._engine.budget.carry(usd)

    # ---- public ---------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(job)`` for every change of every job."""
        self._record.listeners.append(listener)

    @property
    def jobs(self) -> list[Job]:
        """Every job of this runner, oldest first."""
        with self._lock:
            return [rec.job for rec in self._jobs.values()]

    def get(self, job_id: str) -> Job | None:
        """A job by its short id, task id or ``client_business_id``."""
        with self._lock:
            for rec in self._jobs.values():
                job = rec.job
                if job_id in (job.id, job.cbid, job.task_id):
                    return job
        return None

    def submit(
        self,
        params: GenerationParams,
        *,
        repeat: int = 0,
        fresh: bool = False,
        sweep_id: str | None = None,
        listeners: Sequence[Listener] = (),
        parent: Mapping[str, Any] | None = None,
    ) -> Job:
        """Start one job and return at once (a cache hit returns a finished job)."""
        return self.submit_many([(params, repeat)], fresh=fresh, sweep_id=sweep_id, listeners=listeners, parent=parent)[
            0
        ]

    def submit_many(
        self,
        items: Sequence[tuple[GenerationParams, int]],
        *,
        fresh: bool = False,
        sweep_id: str | None = None,
        listeners: Sequence[Listener] = (),
        parent: Mapping[str, Any] | None = None,
        stopped: Callable[[], bool] | None = None,
    ) -> list[Job]:
        """Start jobs for ``(params, repeat)`` pairs; the ledger decides who pays, in one transaction.

        A request already running in this session is shared; one another live
        process works on is adopted (followed, its image used); one whose owner
        is gone is taken over; a stored image is a cache hit. Only the rest are
        new jobs that pay. ``parent`` (``cbid``, ``key``, ``sha256``) names the
        image these edit. ``stopped()`` true once the claim is made (a cancel came while it ran): every job
        is cancelled before it starts, so none is sent or paid.
        """
        with self._claiming:
            return self._submit_many(items, fresh, sweep_id, listeners, parent, stopped)

    def _submit_many(
        self,
        items: Sequence[tuple[GenerationParams, int]],
        fresh: bool,
        sweep_id: str | None,
        listeners: Sequence[Listener],
        parent: Mapping[str, Any] | None,
        stopped: Callable[[], bool] | None,
    ) -> list[Job]:
        if self.closed:
            raise JobError("the job runner is shut down; load the extension again")
        out: list[Job] = []
        new: list[JobRecord] = []
        batch: dict[str, Job] = {}
        running = {} if fresh else self._running()
        for params, repeat in items:
            key = params.cache_key(repeat)
            live = running.get(key)
            shared = None if fresh else batch.get(key) or (live if live is not None and not live.done() else None)
            if shared is not None:  # the same request already running: share it instead of paying twice
                with self._lock:
                    self.shared.append(shared)
                for listener in listeners:
                    shared.add_listener(listener)
                out.append(shared)
                continue
            rec = JobRecord(params, repeat=repeat, sweep_id=sweep_id, parent=parent, owner=self.owner)
            batch[key] = rec.job
            new.append(rec)
            out.append(rec.job)
        found = self.store.claim_many([claims.ledger_request(rec.job, self.backend) for rec in new], fresh=fresh)
        for rec, claim in zip(new, found, strict=True):
            row = claim.row
            claims.take_claim(rec.job, claim)
            self._register(rec)
            for listener in listeners:
                rec.job.add_listener(listener)
            if claim.kind == "cached" and row is not None and row.path:
                claims.finish_from_store(self._record, rec, row)
                continue
            if stopped is not None and stopped():
                rec.cancel(False)  # before it starts: it ends cancelled, nothing sent, nothing paid
            if claim.kind == "lost" and row is not None:  # paid before: asked for once more, never paid again
                self._engine.lanes.start(rec, self._drive(rec, self._recover(rec, row)))
                continue
            rec.adopt = row if claim.kind == "adopt" else None
            rec.unsent = claim.kind == "new" or (row is not None and row.state == "queued" and not row.sent)
            self._start(rec)
        return out

    def submit_after(
        self,
        parent: Job,
        params: GenerationParams,
        resolve: Callable[[], tuple[GenerationParams, Mapping[str, Any]]],
        *,
        repeat: int = 0,
        fresh: bool = False,
        listeners: Sequence[Listener] = (),
        cbid: str | None = None,
    ) -> Job:
        """A job queued behind ``parent`` (an edit of an image still being made); returns at once, ``queued``.

        ``params`` are what it shows while it waits. Its first step waits for the parent's end, parked (the
        parent's end wakes it; no thread is held); then ``resolve()`` gives its final parameters and ``parent``
        record, and it goes on like :meth:`submit` (a cache hit, an adopted row or a new paid request). A parent
        that ends without an image ends it ``failed`` with the parent's reason, nothing sent, nothing paid.
        """
        if self.closed:
            raise JobError("the job runner is shut down; load the extension again")
        rec = JobRecord(params, repeat=repeat, cbid=cbid, owner=self.owner)  # ``cbid``: the id it was queued with
        rec.job.waiting_for = parent.id
        self._register(rec)
        for listener in listeners:
            rec.job.add_listener(listener)
        self._engine.lanes.start(rec, self._drive(rec, self._after(rec, parent, resolve, fresh)))
        return rec.job

    def _after(
        self,
        rec: JobRecord,
        parent: Job,
        resolve: Callable[[], tuple[GenerationParams, Mapping[str, Any]]],
        fresh: bool,
    ) -> Steps:
        """Wait for ``parent`` (parked, looked at least every second), then claim and run the job."""
        job = rec.job
        deadline = time.monotonic() + 3 * self.settings.job_timeout  # the parent's own deadline ends it sooner

        def landed(p: Job) -> None:
            if p.done():
                rec.wake.set()
                self._engine.lanes.schedule(rec, 0.0)

        parent.add_listener(landed)
        while not parent.done():
            check_cancel(rec)
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobError(
                    f"job {parent.id} is still {parent.state.value}; edit {job.id} was not sent (0 requests paid)"
                )
            yield min(left, 1.0)
            self._engine.woke(rec)
        check_cancel(rec)
        if not parent.state.has_image:
            reason = f": {parent.error}" if parent.error else ""
            raise JobError(
                f"job {parent.id} ended {parent.state.value}{reason}; edit {job.id} was not sent (0 requests paid)"
            )
        params, link = resolve()
        job.params, job.key, job.parent, job.waiting_for = params, params.cache_key(job.repeat), dict(link), None
        (claim,) = self.store.claim_many([claims.ledger_request(job, self.backend)], fresh=fresh)
        claims.take_claim(job, claim)
        if claim.kind == "cached" and claim.row is not None and claim.row.path:
            claims.finish_from_store(self._record, rec, claim.row)
            return
        if claim.kind == "lost" and claim.row is not None:
            yield from self._recover(rec, claim.row)
            return
        rec.adopt = claim.row if claim.kind == "adopt" else None
        rec.unsent = claim.kind == "new" or (claim.row is not None and claim.row.state == "queued")
        self._record.notify(rec)
        yield from self._work(rec)

    def resume(self) -> list[Job]:
        """Pick up unfinished ledger rows whose owner is gone (never a live process's)."""
        started: list[Job] = []
        known = {j.cbid for j in self.jobs if not j.done()}
        for row in self.store.orphans(self.backend):
            if row.cbid in known:
                continue
            rec = claims.job_from_row(row, self.owner)
            if rec is None:
                self.store.update(row.cbid, state="failed", error="cannot resume: the stored parameters are unreadable")
                continue
            if self.store.take_over(row.cbid) is None:  # another process took it first
                continue
            self._register(rec)
            self._start(rec)
            started.append(rec.job)
        return started

    def cancel(self, target: str | Job | Iterable[Job] = "all", *, drop: bool = False) -> int:
        """Cancel one job (by object or id), a sweep (by its id) or ``"all"``; returns how many will end cancelled."""
        if isinstance(target, Job):
            jobs: list[Job] = [target]
        elif isinstance(target, str):
            if target == "all":
                jobs = self.jobs
            else:
                jobs = [j for j in self.jobs if j.sweep_id == target]
                one = self.get(target)
                if one is not None:
                    jobs.append(one)
        else:
            jobs = list(target)
        return sum(job.cancel(drop=drop) for job in jobs if not job.done())

    def wait(self, jobs: Iterable[Job] | None = None, timeout: float | None = None) -> bool:
        """Wait until the given jobs (default: all) end; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in list(jobs) if jobs is not None else self.jobs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.wait(left):
                return False
        return True

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop: unfinished jobs stay in the ledger, handed back so a re-run or ``resume`` takes them at once."""
        lanes = self._engine.lanes
        lanes.close()
        self.store.stop_heartbeat()
        self.gate.stop.set()
        self.client.interrupt()
        lanes.shutdown(self._records(), wait=wait)
        try:
            self.store.release()
        except (sqlite3.Error, OSError, ConfigError):
            log.debug("could not hand the rows back", exc_info=True)
        for rec in self._records():
            job = rec.job
            if not job.done():
                job.error = "stopped when the runner shut down; Session.resume() finishes it"
                job.exception = JobCancelled(job.error, task_id=job.task_id)
                self._record.finish(rec, JobState.CANCELLED, ledger=False)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` began: no new job starts."""
        return self._engine.lanes.closed

    @property
    def stats(self) -> dict[str, int]:
        """Requests sent so far by category."""
        return dict(self.gate.counts)

    # ---- each job, from start to end --------------------------------------------------------

    def _records(self) -> list[JobRecord]:
        with self._lock:
            return list(self._jobs.values())

    def _running(self) -> dict[str, Job]:
        """This runner's unfinished, uncancelled jobs by request key (the first of each), in one pass per cell."""
        found: dict[str, Job] = {}
        with self._lock:
            for rec in self._jobs.values():
                if not rec.done() and not rec.cancelled:
                    found.setdefault(rec.job.key, rec.job)
        return found

    def _register(self, rec: JobRecord) -> None:
        """Give the job a short id unique in this runner (grown on a collision) and list it."""
        job = rec.job
        with self._lock:
            n, extra = 6, 0
            while True:
                short = job.cbid[-n:] if n <= len(job.cbid) else f"{job.cbid[-6:]}-{extra}"
                if short not in self._jobs:
                    break
                if n <= len(job.cbid):
                    n += 1
                else:
                    extra += 1
            job.id = short
            self._jobs[short] = rec

    def _start(self, rec: JobRecord) -> None:
        self._engine.lanes.start(rec, self._drive(rec))

    def _drive(self, rec: JobRecord, work: Steps | None = None) -> Steps:
        """The job from start to end, as steps; every exception ends in its final state (see ``engine.FINAL_STATES``)."""
        job = rec.job
        try:
            yield from (self._work(rec) if work is None else work)
        except Stopped:
            return
        except Exception as exc:
            state = final_state(exc)
            if state is None:
                log.exception("job %s failed unexpectedly", job.id)
                job.error = f"internal error: {type(exc).__name__}: {exc}"
                job.exception = JobError(job.error, task_id=job.task_id)
                state = JobState.FAILED if job.task_id is None else JobState.TIMEOUT
            else:
                job.error, job.exception = str(exc), exc if isinstance(exc, GemimgError) else None
            if not job.paid:
                job.cost_usd = 0.0  # nothing was paid
            self._record.finish(rec, state, cost_usd=job.cost_usd)

    def _work(self, rec: JobRecord) -> Steps:
        job = rec.job
        if self.closed:
            raise Stopped
        while True:
            deadline = time.monotonic() + self.settings.job_timeout
            try:
                if rec.adopt is not None and (yield from claims.follow(self._engine, rec, deadline)):
                    return
                if job.task_id is None:
                    yield from self._submitter.run(rec)
                    deadline = time.monotonic() + self.settings.job_timeout  # waiting for a turn is not the task's time
                yield from self._collector.run(rec, deadline)
                return
            except LeaseLost:  # paused past its lease, its row taken over: follow the row, pay nothing
                self._lost(rec)

    def _recover(self, rec: JobRecord, row: LedgerRow) -> Steps:
        """A request paid before and lost: collect it if the gateway finds it now ($0), else it ends ``lost``."""
        if (yield from claims.find_lost(self._engine, rec, row)):
            yield from self._work(rec)

    def _lost(self, rec: JobRecord) -> None:
        """This job's row was taken over by another process: give back its place and budget, then follow the row."""
        job = rec.job
        log.info("job %s: another process took its row over; following it", job.id)
        self._engine.window.release(rec)
        self._engine.budget.settle(rec)
        rec.adopt = self.store.get(job.cbid)
        rec.unsent = False
        if rec.adopt is None:
            raise JobError(f"job {job.id}: its ledger row is gone")
