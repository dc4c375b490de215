"""How a job changes state: the ledger row first, then memory, then the listeners (:class:`Transitions`)."""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from gemimg_jupyter.domain.errors import JobError
from gemimg_jupyter.domain.models import JobState
from gemimg_jupyter.engine.handle import Listener
from gemimg_jupyter.engine.limits import Reservations, Window
from gemimg_jupyter.engine.record import JobRecord
from gemimg_jupyter.ledger.store import Store

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Internal: another process took this job's row over (this one was paused or starved past its lease).

    Raised by a fenced write before anything is paid or stored; the runner then follows the row.
    """


class Transitions:
    """Every change of a job's state goes through here, so the ledger, the limits and the listeners agree.

    ``listeners`` are the runner's own, called for every job after the job's.
    """

    def __init__(self, store: Store, window: Window, budget: Reservations) -> None:
        self.store = store
        self.window = window
        self.budget = budget
        self.listeners: list[Listener] = []

    def notify(self, rec: JobRecord) -> None:
        """Wake whoever waits on the job, then call its listeners and the runner's."""
        rec.signals.notify(rec.job, self.listeners)

    def set_state(self, rec: JobRecord, state: JobState, progress: int | None = None) -> None:
        """Change the job in memory only (the ledger row stays as it is); listeners hear of a real change."""
        job = rec.job
        changed = job.state is not state or (progress is not None and progress != job.progress)
        job.state = state
        if progress is not None:
            job.progress = progress
        if changed:
            self.notify(rec)

    def move(
        self, rec: JobRecord, state: JobState, progress: int | None = None, *, durable: bool = True, **row: Any
    ) -> None:
        """Move a job to ``state``: the ledger row first (state plus ``row`` columns), then memory and listeners.

        The write is fenced (:meth:`~gemimg_jupyter.ledger.store.Store.fenced_update`): when another process
        took the row over, :class:`LeaseLost` is raised before anything else happens (a task id this process
        was given is written all the same). A busy ledger fails the move of a job not paid yet (the caller
        tries again later); a paid job's write is kept in memory and written with the next write.
        ``durable=False``, for a state nothing waits for (``downloading``): the write joins the next batch,
        fenced when written, and the move goes on at once; the caller checks the row is still held before
        anything it does next counts (:meth:`~gemimg_jupyter.ledger.store.Store.holds`).
        """
        job = rec.job
        self.store.flush()
        deferred = self.store.take_deferred(job.cbid)
        fields = {**deferred, "state": state.value, **row}
        if not durable and not deferred:  # a kept write (a task id) never waits in a queue
            self.store.fenced_update(job.cbid, durable=False, **fields)
            self.set_state(rec, state, progress)
            return
        try:
            held = self.store.fenced_update(job.cbid, **fields)
        except (sqlite3.Error, OSError) as exc:
            if job.task_id is None:
                raise
            log.warning("job %s: the ledger is busy (%s); its task id %s is kept until it can be written", job.id,
                        exc, job.task_id)  # fmt: skip
            self.store.defer(job.cbid, fields)
            held = True
        if not held:
            self._keep_task_id(rec)
            raise LeaseLost(job.cbid)
        self.set_state(rec, state, progress)

    def _keep_task_id(self, rec: JobRecord) -> None:
        job = rec.job
        if job.task_id is None:
            return
        try:
            self.store.keep_task_id(job.cbid, job.task_id, job.submitted_at)
        except (sqlite3.Error, OSError):
            self.store.defer(job.cbid, {"task_id": job.task_id, "submitted": job.submitted_at})

    def finish(self, rec: JobRecord, state: JobState, *, ledger: bool = True, **row: Any) -> None:
        """End the job in ``state``: free its place and budget, write its end to the ledger (unless another process owns the row)."""
        job = rec.job
        job.finished_at = time.time()
        self.window.release(rec)
        self.budget.settle(rec)
        if ledger and state is not JobState.CACHED and rec.adopt is None:
            self._write_end(rec, state, row)
        job.state = state
        rec.signals.done.set()
        self.notify(rec)

    def _write_end(self, rec: JobRecord, state: JobState, row: dict[str, Any]) -> None:
        """The job's end in its row, fenced; never without the task id it was given (a re-run looks it up)."""
        job = rec.job
        if state is JobState.TIMEOUT:
            row["owner"] = None  # resumable: anyone (a re-run, resume) may take it over at once
        if job.task_id is not None:
            row.setdefault("task_id", job.task_id)
            row.setdefault("submitted", job.submitted_at)
        self.store.flush()
        fields = {**self.store.take_deferred(job.cbid), "state": state.value, "finished": job.finished_at,
                  "error": job.error, **row}  # fmt: skip
        try:
            if not self.store.fenced_update(job.cbid, **fields):
                log.info("job %s: another process holds its row now; the row's end is that process's", job.id)
                self._keep_task_id(rec)
        except (sqlite3.Error, OSError) as exc:  # the job still ends; the row stays unfinished, so resumable
            log.warning("job %s: could not write its end to the ledger yet: %s", job.id, exc)
            if job.task_id is not None:
                self.store.defer(job.cbid, fields)

    def abort(self, rec: JobRecord, exc: BaseException) -> None:
        """End a job that an unexpected error escaped from (it must end, whatever happened; the ledger row stays)."""
        job = rec.job
        if job.done():
            return
        if not isinstance(exc, Exception):
            job.error = f"stopped: {type(exc).__name__}"
        job.exception = job.exception or JobError(job.error or "stopped", task_id=job.task_id)
        self.finish(rec, JobState.TIMEOUT if job.task_id else JobState.CANCELLED, ledger=False)
