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

        ``durable`` (default): the row is on disk before memory changes. ``durable=False`` for a state
        nothing depends on: the change is queued for the next group commit (:mod:`~gemimg_jupyter.ledger.group`).
        """
        self.store.update(rec.job.cbid, durable=durable, state=state.value, **row)
        self.set_state(rec, state, progress)

    def finish(self, rec: JobRecord, state: JobState, *, ledger: bool = True, **row: Any) -> None:
        """End the job in ``state``: free its place and budget, write its end to the ledger (unless another process owns the row)."""
        job = rec.job
        job.finished_at = time.time()
        self.window.release(rec)
        self.budget.settle(rec)
        if ledger and state is not JobState.CACHED and rec.adopt is None:
            if state is JobState.TIMEOUT:
                row["owner"] = None  # resumable: anyone (a re-run, resume) may take it over at once
            try:
                self.store.update(job.cbid, state=state.value, finished=job.finished_at, error=job.error, **row)
            except (sqlite3.Error, OSError) as exc:  # the job still ends; the row stays unfinished, so resumable
                log.warning("job %s: could not write its end to the ledger: %s", job.id, exc)
        job.state = state
        rec.signals.done.set()
        self.notify(rec)

    def abort(self, rec: JobRecord, exc: BaseException) -> None:
        """End a job that an unexpected error escaped from (it must end, whatever happened; the ledger row stays)."""
        job = rec.job
        if job.done():
            return
        if not isinstance(exc, Exception):
            job.error = f"stopped: {type(exc).__name__}"
        job.exception = job.exception or JobError(job.error or "stopped", task_id=job.task_id)
        self.finish(rec, JobState.TIMEOUT if job.task_id else JobState.CANCELLED, ledger=False)
