"""What every phase of a job shares (:class:`Engine`), and how an exception ends a job (:func:`final_state`).

The runner (:mod:`.runner`) builds one :class:`Engine` and hands it to its
phases: following another process's row (:mod:`.claims`), submitting
(:mod:`.submit`), and polling, downloading and writing (:mod:`.collect`).
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass

from gemimg_jupyter.domain.errors import (
    ContentBlockedError,
    GemimgError,
    JobCancelled,
    JobTimeoutError,
    TaskBlockedError,
    TaskExpiredError,
    TaskFailedError,
    TaskLostError,
)
from gemimg_jupyter.domain.models import JobState, TaskStatus
from gemimg_jupyter.domain.settings import Settings
from gemimg_jupyter.engine.cadence import PollSchedule
from gemimg_jupyter.engine.lanes import Lanes
from gemimg_jupyter.engine.limits import Line, RateGate, Reservations, Window
from gemimg_jupyter.engine.record import JobRecord
from gemimg_jupyter.engine.transitions import Transitions
from gemimg_jupyter.gateway.client import ToAPIsClient
from gemimg_jupyter.ledger.store import Store

#: How an exception ends a job, first match wins (anything else is an internal error).
FINAL_STATES: tuple[tuple[type[BaseException], JobState], ...] = (
    (JobCancelled, JobState.CANCELLED),
    (TaskBlockedError, JobState.BLOCKED),
    (ContentBlockedError, JobState.BLOCKED),  # refused at submit: no task, nothing charged
    (TaskFailedError, JobState.FAILED),
    (TaskExpiredError, JobState.EXPIRED),
    (JobTimeoutError, JobState.TIMEOUT),
    (TaskLostError, JobState.LOST),  # paid, unreachable: its price counts
    (GemimgError, JobState.FAILED),
)


def final_state(exc: BaseException) -> JobState | None:
    """The state ``exc`` ends a job in (``None``: an internal error)."""
    return next((state for kind, state in FINAL_STATES if isinstance(exc, kind)), None)


@dataclass
class Engine:
    """The gateway, the ledger, the settings, the limits and the lanes, as one runner's phases see them.

    ``settings`` may be replaced while jobs run (the next step reads the new
    one); the window, the poll schedule and the pools keep what they were
    built with.
    """

    client: ToAPIsClient
    store: Store
    settings: Settings
    backend: str
    gate: RateGate
    rng: random.Random
    polls: PollSchedule
    window: Window
    #: the submit turns: who may hold a submit token now, first come, first served
    turns: Line
    budget: Reservations
    lanes: Lanes
    record: Transitions

    def woke(self, rec: JobRecord) -> None:
        """After every wait: clear the job's wake-up; end its steps if the runner is shutting down."""
        self.lanes.woke(rec)

    def stop_now(self, rec: JobRecord) -> bool:
        """True when a download in progress should stop (shutdown, or a cancel that drops paid work)."""
        return self.lanes.closed or (rec.cancelled and rec.drop)


def check_cancel(rec: JobRecord) -> None:
    """Raise :class:`JobCancelled` if the job was cancelled and may stop here.

    Before its submit a cancelled job stops; after it, only ``drop=True``
    (or a followed row) stops it: a submitted task is paid for, so it is
    still downloaded.
    """
    job = rec.job
    if rec.cancelled and (job.task_id is None or rec.drop or rec.adopt is not None):
        what = "dropped after submit (it is still paid for)" if job.task_id else "cancelled before submit"
        raise JobCancelled(f"job {job.id} {what}", task_id=job.task_id)


def ask_by_business_id(e: Engine, rec: JobRecord, cbid: str) -> Generator[float | None, None, TaskStatus | None]:
    """The task the gateway has for business id ``cbid`` (``None``: it has none), asked as a status query through
    the scheduler's query lane like every poll: no thread waits on the bucket."""
    wait = e.gate.reserve("query")
    if wait > 0:
        yield wait
        e.woke(rec)
        check_cancel(rec)
    with e.gate.ticket("query"):
        return e.client.find_by_business_id(cbid)
