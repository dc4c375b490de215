"""The runner's record of one job: :class:`JobRecord`.

The user holds the :class:`~.handle.Job` (its public state, its result);
the runner's parts hold this record of it: the handle, how the job's
changes reach its waiters (:class:`~.handle.Signals`), and the scheduler's
bookkeeping (its steps and heap entry, its reserved budget, a cancel
asked for, the row of another process it follows; the window of
unfinished tasks keeps who holds its places). Only the engine's modules
read or write it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

from gemimg_jupyter.domain.models import GenerationParams
from gemimg_jupyter.engine.handle import Job, JobOwner, Signals

if TYPE_CHECKING:
    from gemimg_jupyter.ledger.store import LedgerRow

#: A job as a state machine: each step yields how long to wait before the next (``None``: until woken).
Steps = Generator[float | None, None, None]


class JobRecord:
    """One job as the runner sees it: the user's handle (:attr:`job`) and the scheduler's bookkeeping.

    It is the handle's :class:`~.handle.JobControl`: ``job.cancel()`` comes
    here, sets :attr:`cancelled` and wakes the job's steps.
    """

    def __init__(
        self,
        params: GenerationParams,
        *,
        repeat: int = 0,
        sweep_id: str | None = None,
        cbid: str | None = None,
        parent: Mapping[str, Any] | None = None,
        owner: JobOwner | None = None,
    ) -> None:
        self.signals = Signals()
        #: the user's handle
        self.job = Job(
            params,
            repeat=repeat,
            sweep_id=sweep_id,
            cbid=cbid,
            parent=parent,
            owner=owner,
            control=self,
            signals=self.signals,
        )
        self.cancelled = False  # a cancel was asked for
        self.drop = False  # … that also drops paid work
        self.adopt: LedgerRow | None = None  # another live process's row this job follows
        self.unsent = False  # its row is known to be "queued": no earlier try can have reached the gateway
        self.steps: Steps | None = None  # the job as a state machine
        self.step_lock = threading.Lock()
        self.token = -1  # its entry in the scheduler's heap (older entries are stale)
        self.wake = threading.Event()  # set by a cancel or a shutdown: the next wait is cut short
        self.waker: Callable[[], None] | None = None  # schedules its next step now
        self.reserved = 0.0  # budget reserved for its submit
        self.asked_wait: str | None = None  # a long Retry-After the gateway asked for while it polled ("60 min")
        self._lock = threading.Lock()

    def done(self) -> bool:
        """True once the job is in a terminal state."""
        return self.signals.done.is_set()

    def cancel(self, drop: bool) -> bool:
        """A cancel from the handle: stop before submit (or, with ``drop``, after it); ``True`` if it will end cancelled."""
        with self._lock:
            if self.done():
                return False
            self.cancelled = True
            self.drop = self.drop or drop
            will = self.job.task_id is None or drop
        self.wake.set()
        if self.waker is not None:
            self.waker()
        return will

    def __repr__(self) -> str:
        return f"<JobRecord of {self.job!r}>"


def parent_of(job: Job) -> dict[str, Any]:
    """``{"parent": …}`` for an edit, ``{}`` otherwise (merged into the ledger params and provenance)."""
    return {"parent": job.parent} if job.parent else {}
