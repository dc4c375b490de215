"""Background jobs: submit, poll and download without blocking the caller.

:class:`JobRunner` starts each requested image as a :class:`Job` (the user's
handle) and runs it as a state machine under shared limits, keeping its own
record of each job (:class:`~.record.JobRecord`: the scheduler's bookkeeping,
never seen by the user); each job notifies plain-callable listeners on every
change, so the display layer and the panel never have to be known here. A job
reaches the session that made it only through :class:`JobOwner`. Where each
part lives:

==================  ===========================================================
``handle``          :class:`Job`, the user's result handle, its listeners, :class:`JobOwner`
``record``          :class:`~.record.JobRecord`, the runner's record of one job (steps, window, budget, cancel)
``runner``          :class:`JobRunner`, the coordinator (submit, resume, cancel, wait, shutdown)
``claims``          the ledger's side: the row asked for and given, adopted rows, resume
``submit``          the submit phase: uploads, the window, the budget, one paid submit
``collect``         the collect phase: polling, download, writing the image
``cadence``         :class:`PollSchedule`, when to look next (pure)
``limits``          :class:`RateGate` and its token buckets, the adaptive window, the budget
``lanes``           the scheduler thread and the bounded I/O and download pools
``transitions``     every state change: ledger row, memory, listeners
``shared``          what the phases share, and how an exception ends a job
==================  ===========================================================
"""

from gemimg_jupyter.engine.cadence import PollSchedule
from gemimg_jupyter.engine.handle import Job, JobOwner, Listener
from gemimg_jupyter.engine.limits import RateGate
from gemimg_jupyter.engine.runner import JobRunner

__all__ = ["Job", "JobOwner", "JobRunner", "Listener", "PollSchedule", "RateGate"]
